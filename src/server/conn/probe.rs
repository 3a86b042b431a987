//! What tests read of a connection (the simulation checks the back-pressure bound with it).

use super::Conn;

impl Conn {
    /// Unconsumed input and unsent in-memory output, in bytes: what [`super::IN_HIGH`] and
    /// [`super::OUT_HIGH`] bound.
    pub fn buffered(&self) -> (usize, usize) {
        (self.inbuf.len(), self.out.bytes())
    }
}
