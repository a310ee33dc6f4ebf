//! Lets the port start without any environment: the shared libpython's
//! directory goes into the binary's run path, and the interpreter's prefix and
//! executable are compiled in so that the embedded interpreter finds its
//! standard library and site-packages wherever the binary is installed.
use std::process::Command;

fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    pyo3_build_config::use_pyo3_cfgs();
    let config = pyo3_build_config::get();
    let executable = config
        .executable()
        .map(str::to_string)
        .expect("pyo3 found no Python interpreter to build against");
    let output = Command::new(&executable)
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .expect("cannot run the Python interpreter found by pyo3");
    assert!(output.status.success(), "the Python interpreter failed to print its prefix");
    let prefix = String::from_utf8(output.stdout).expect("non-UTF-8 Python prefix");
    println!("cargo:rustc-env=PY_REACTOR_PYTHON_EXECUTABLE={executable}");
    println!("cargo:rustc-env=PY_REACTOR_PYTHON_HOME={}", prefix.trim());
    // The `python` option of a context must name a Python of this minor version.
    println!("cargo:rustc-env=PY_REACTOR_PYTHON_VERSION={}.{}", config.version().major, config.version().minor);
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
