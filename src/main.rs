fn main() {
    println!("webserv {}", env!("CARGO_PKG_VERSION"));
}
