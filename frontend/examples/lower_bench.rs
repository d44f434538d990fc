//! Benchmark (not a test): parse and lower a generated 2,000-instruction, 20-stage Dockerfile; prints the median
//! of 31 runs. Run with `cargo run --release -p frontend --example lower_bench`.

use std::time::Instant;

use frontend::{BuildOpts, NoResolver};

fn dockerfile(instructions: usize, stages: usize) -> String {
    let mut s = String::from("ARG BASE=busybox\nARG VERSION=1.0\n");
    let per_stage = instructions / stages;
    for st in 0..stages {
        s.push_str(&format!(
            "FROM ${{BASE}}:latest AS s{st}\nARG VERSION\nENV STAGE={st}\nWORKDIR /w{st}\n"
        ));
        for i in 0..per_stage.saturating_sub(4) {
            match i % 5 {
                0 => s.push_str(&format!(
                    "RUN echo step {i} $VERSION && touch /w{st}/f{i}\n"
                )),
                1 => s.push_str(&format!("COPY file{i}.txt /w{st}/\n")),
                2 => s.push_str(&format!("ENV K{i}=\"v {i}\" L{i}=${{STAGE}}-{i}\n")),
                3 => s.push_str(&format!(
                    "RUN --mount=type=cache,target=/cache{i} make -j2 target{i}\n"
                )),
                _ if st > 0 => s.push_str(&format!(
                    "COPY --from=s{} /w{}/f0 /from{i}\n",
                    st - 1,
                    st - 1
                )),
                _ => s.push_str(&format!("LABEL l{i}=x\n")),
            }
        }
    }
    s
}

fn main() {
    let text = dockerfile(2_000, 20);
    let count = text.lines().count();
    let opts = BuildOpts::default();
    let mut times = Vec::new();
    let mut vertices = 0;
    for _ in 0..31 {
        let start = Instant::now();
        let df = frontend::parser::parse(&text).expect("the generated Dockerfile parses");
        let lowered =
            frontend::lower(&df, &opts, &NoResolver).expect("the generated Dockerfile lowers");
        times.push(start.elapsed());
        vertices = lowered.definition.len();
    }
    times.sort();
    println!("| instructions | vertices | median parse+lower | min | max |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {count} | {vertices} | {:.2} ms | {:.2} ms | {:.2} ms |",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
}
