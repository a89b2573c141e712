//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the files it found,
//! and cargo tracks only files that already existed.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
