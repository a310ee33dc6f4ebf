//! Everything the port sends to the VM goes through one [`Outbound`].
//!
//! Notices come from the loop and, through `erlang.send` and Python's
//! streams, from any Python thread; a mutex keeps each frame whole. When the
//! VM has gone (a write fails) the outbound remembers it so the loop can end.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::framing::write_frame;
use crate::message::Notice;
use crate::recording::Recorder;

/// Where notices go.
#[derive(Debug)]
pub enum Sink {
    /// `{packet,4}` frames to the VM.
    Frames(File),
    /// Readable lines on stderr, when no VM is attached (`py_reactor_port python`).
    Stderr,
    /// Kept in memory (replay compares them with a recording).
    Memory(Vec<Vec<u8>>),
}

/// The single writer of notices.
#[derive(Debug)]
pub struct Outbound {
    sink: Mutex<Sink>,
    broken: AtomicBool,
    recorder: Option<Arc<Recorder>>,
}

impl Outbound {
    pub fn new(sink: Sink, recorder: Option<Arc<Recorder>>) -> Outbound {
        Outbound { sink: Mutex::new(sink), broken: AtomicBool::new(false), recorder }
    }

    /// Takes the frames kept by a [`Sink::Memory`].
    pub fn take_memory(&self) -> Vec<Vec<u8>> {
        match &mut *self.lock() {
            Sink::Memory(frames) => std::mem::take(frames),
            _ => Vec::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends one notice. A failure marks the outbound broken (the VM is gone)
    /// and is returned; later sends are dropped quietly, as nobody is left
    /// to read them.
    pub fn send(&self, notice: &Notice) -> io::Result<()> {
        // A process forked by Python shares the frame stream: it must never
        // write to it.
        crate::forkguard::exit_if_child("sending a frame");
        if self.is_broken() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the VM is gone"));
        }
        let mut sink = self.lock();
        let result = match &mut *sink {
            Sink::Frames(file) => {
                let frame = notice.encode();
                if let Some(recorder) = &self.recorder {
                    recorder.frame_out(&frame);
                }
                write_frame(file, &frame)
            }
            Sink::Stderr => writeln!(io::stderr(), "py_reactor_port: {}", notice.to_term()),
            Sink::Memory(frames) => {
                let frame = notice.encode();
                if let Some(recorder) = &self.recorder {
                    recorder.frame_out(&frame);
                }
                frames.push(frame);
                Ok(())
            }
        };
        if result.is_err() {
            self.broken.store(true, Ordering::SeqCst);
        }
        result
    }

    /// Whether a send has failed.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }
}
