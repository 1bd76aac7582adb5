pub use kappa_engine as engine;
