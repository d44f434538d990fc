# syntax=docker/dockerfile:1
FROM node:20-alpine AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev

FROM node:20-alpine AS runner
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --chown=node:node . .
COPY <<-EOF /app/healthcheck.js
	require('http').get('http://localhost:3000', r => process.exit(r.statusCode === 200 ? 0 : 1));
	EOF
RUN <<EOF
set -e
addgroup -S app
adduser -S app -G app
EOF
USER node
EXPOSE 3000
CMD ["node", "server.js"]
