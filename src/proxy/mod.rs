//! Running behind a load balancer: the PROXY protocol header ([`header`]) and nginx's realip
//! ([`realip`]), which together decide the client address a request is logged and run under.

pub mod header;
pub mod realip;
