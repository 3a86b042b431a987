pub mod atomic_file;
pub mod multipart;
