fn main() {
    println!("govpaas-operator {}", env!("CARGO_PKG_VERSION"));
}
