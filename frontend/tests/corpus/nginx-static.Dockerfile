FROM debian:bookworm-slim AS fetch
ARG NGINX_VERSION=1.25.4
ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 \
    https://nginx.org/download/nginx-${NGINX_VERSION}.tar.gz /tmp/
ADD https://github.com/example/site.git#main:public /site

FROM nginx:1.25
LABEL org.opencontainers.image.source="https://example.com/site" \
      org.opencontainers.image.licenses="MIT"
COPY --link --from=fetch /site /usr/share/nginx/html
COPY --from=nginx:1.25 /etc/nginx/nginx.conf /etc/nginx/nginx.conf
STOPSIGNAL SIGQUIT
VOLUME ["/var/cache/nginx"]
EXPOSE 80/tcp 443
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN nginx -t 2>&1 | tee /tmp/nginx-test.log
ONBUILD COPY site/ /usr/share/nginx/html/
