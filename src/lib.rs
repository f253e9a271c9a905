pub use dype_core;
