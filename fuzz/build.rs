//! The `convert` target embeds CPython: put the shared libpython's directory
//! in the fuzz binaries' run path, as the port's own build script does, so
//! they start without `LD_LIBRARY_PATH`.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
