//! Compiles INCRBYFLOAT's long-double arithmetic (csrc/long_double.c; see its comment).

fn main() {
    println!("cargo:rerun-if-changed=csrc/long_double.c");
    cc::Build::new().file("csrc/long_double.c").warnings(true).compile("quill_long_double");
}
