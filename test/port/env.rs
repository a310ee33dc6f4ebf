//! The binary runs with an empty environment, as `open_port` may give it:
//! no LD_LIBRARY_PATH, no PYTHONHOME, no PATH.

#[path = "driver/mod.rs"]
mod driver;

use driver::*;

#[test]
fn works_with_an_empty_environment() {
    let mut p = Port::start_with(Opts { env_clear: true, ..Opts::default() });
    p.setup_std(ECHO, vec![]);
    // the standard library, including extension modules, loads
    let v = p.eval_ok("__import__('json').dumps({'a': [1, 2]})");
    assert!(term_eq(&v, &bin(r#"{"a": [1, 2]}"#)), "{}", show(&v));
    let v = p.eval_ok("__import__('_socket').__name__ + __import__('math').__name__ + __import__('select').__name__");
    assert!(term_eq(&v, &bin("_socketmathselect")), "{}", show(&v));
    // the frame stream and fd passing work as usual
    let (mut c, id) = p.handoff_tcp();
    echo_roundtrip(&mut c, b"no environment needed");
    drop(c);
    assert!(is_atom(&p.wait_closed(id), "eof"));
    let env = p.eval_ok("sorted(k for k in __import__('os').environ if k.startswith(('LD_', 'PYTHON')))");
    assert!(term_eq(&env, &list(vec![])), "the port set environment variables for itself: {}", show(&env));
    assert!(is_atom(&p.stop(), "ok"));
    assert_eq!(p.wait_exit(T).and_then(|s| s.code()), Some(0));
}

#[test]
fn python_output_is_unbuffered_without_environment() {
    let mut p = Port::start_with(Opts { env_clear: true, ..Opts::default() });
    p.setup_std("print('line without flush')\n", vec![]);
    p.wait_log("a print with no PYTHONUNBUFFERED", |l, t| l == "info" && t == "line without flush");
}
