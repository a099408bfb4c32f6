//! The LGSP gateway. For now it only reports its version; the LGSP issue builds the rest.
fn main() {
    println!("govpaas-gateway {}", env!("CARGO_PKG_VERSION"));
}
