//! What answers a request beyond static files: uploads (atomic files, multipart).
pub mod atomic_file;
