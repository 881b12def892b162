//! `cargo run -p sluice-codegen`: regenerate the protocol's Rust code from its schema.

fn main() {
    let out = sluice_codegen::protocol_dir().join("src/generated");
    if let Err(message) = sluice_codegen::generate(&out) {
        eprintln!("sluice-codegen: {message}");
        std::process::exit(1);
    }
    println!("regenerated {}", out.display());
}
