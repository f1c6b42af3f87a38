//! One attempt of `exec`: COMMAND run directly (no shell) with the chosen endpoint in its
//! environment, in a private folder for the response's headers and usage that is removed
//! afterwards; stdin replayed from what `exec` read once; stdout held back or streamed;
//! SIGTERM, and a SIGINT sent to `exec` alone, passed on to it once.

use std::ffi::{OsStr, OsString};
use std::fs::DirBuilder;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::response::{Response, usage};
use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;

/// What every attempt reads on its stdin.
pub enum Input {
    /// `exec`'s stdin is a terminal: the command reads it directly.
    Terminal,
    /// Read once, given whole to every attempt.
    Bytes(Arc<Vec<u8>>),
}

impl Input {
    pub fn read_stdin() -> Result<Input> {
        let stdin = io::stdin();
        if stdin.is_terminal() {
            return Ok(Input::Terminal);
        }
        let mut bytes = Vec::new();
        stdin
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read stdin")?;
        Ok(Input::Bytes(Arc::new(bytes)))
    }
}

/// How an attempt ended, and what it left behind.
pub struct Finished {
    pub status: ExitStatus,
    /// Its stdout, when held back (empty when streamed).
    pub stdout: Vec<u8>,
    /// It wrote to stdout while streaming.
    pub streamed: bool,
    /// The header dump it wrote, if any, parsed.
    pub response: Option<Response>,
    /// The usage file it wrote, if any.
    pub usage: Option<Vec<u8>>,
    /// What was ignored of what it left behind.
    pub notes: Vec<String>,
    /// A signal was passed on to it (or reached it from the terminal).
    pub interrupted: bool,
    /// From its start to its exit, on the monotonic clock (whatever `LLM_ROTATE_NOW` says).
    pub took: std::time::Duration,
}

impl Finished {
    /// The exit status a shell would report: the code, or 128 + the signal that killed it.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .or_else(|| self.status.signal().map(|s| 128 + s))
            .unwrap_or(1)
    }
}

/// A folder readable by the user alone, removed (with what is in it) when dropped.
struct Private(PathBuf);

impl Private {
    fn create() -> Result<Private> {
        let base = std::env::temp_dir();
        for n in 0u32.. {
            // A name nobody can guess, created only if new: another user cannot make it
            // first (to make exec fail, or to have it write through a link of theirs).
            let path = base.join(format!("llm-rotate-{}", crate::random::id()));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Private(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create a private folder in {}", base.display())
                    });
                }
            }
        }
        unreachable!("the loop returns")
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Passes SIGTERM, and SIGINT sent by a process, to the running attempt. A terminal's
/// Ctrl-C (sent by the kernel to the whole foreground group) already reached the command,
/// so it is only noted.
pub struct Signals {
    child: Arc<AtomicI32>,
    interrupted: Arc<AtomicBool>,
    /// The last signal that came.
    signal: Arc<AtomicI32>,
    handle: signal_hook::iterator::Handle,
}

impl Signals {
    pub fn start() -> Result<Signals> {
        let mut signals = SignalsInfo::<WithOrigin>::new([SIGTERM, SIGINT])
            .context("cannot watch for signals")?;
        let handle = signals.handle();
        let child = Arc::new(AtomicI32::new(0));
        let interrupted = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicI32::new(0));
        let (to, noted, which) = (
            Arc::clone(&child),
            Arc::clone(&interrupted),
            Arc::clone(&signal),
        );
        std::thread::spawn(move || {
            for origin in signals.forever() {
                which.store(origin.signal, Ordering::SeqCst);
                noted.store(true, Ordering::SeqCst);
                let from_terminal = origin.signal == SIGINT && origin.cause == Cause::Kernel;
                let pid = to.load(Ordering::SeqCst);
                if pid > 0 && !from_terminal {
                    pass_on(pid, origin.signal);
                }
            }
        });
        Ok(Signals {
            child,
            interrupted,
            signal,
            handle,
        })
    }

    /// A signal came since the watch began.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Set when a signal comes, for a wait to end on.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.interrupted)
    }

    /// The exit status of a process ended by the last signal: 128 + its number.
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal.load(Ordering::SeqCst)).clamp(0, 255) as u8
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.handle.close();
    }
}

fn pass_on(pid: i32, signal: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Runs `program ARGS` once with `vars` set, plus the paths of the header and usage files
/// and the attempt's number. Err: the command could not be started.
pub fn run(
    program: &OsStr,
    args: &[OsString],
    vars: &[(String, String)],
    number: u32,
    input: &Input,
    stream: bool,
    signals: &Signals,
) -> Result<Finished> {
    let folder = Private::create()?;
    let headers = folder.0.join("headers");
    let usage = folder.0.join("usage");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env("LLM_ROTATE_HEADERS", &headers)
        .env("LLM_ROTATE_USAGE", &usage)
        .env("LLM_ROTATE_ATTEMPT", number.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .stdin(match input {
            Input::Terminal => Stdio::inherit(),
            // Nothing to give: the command reads an end of file, with no pipe to feed.
            Input::Bytes(bytes) if bytes.is_empty() => Stdio::null(),
            Input::Bytes(_) => Stdio::piped(),
        });
    let started = std::time::Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    signals.child.store(child.id() as i32, Ordering::SeqCst);

    if let (Input::Bytes(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        let bytes = Arc::clone(bytes);
        // A command that stops reading early closes the pipe: not an error.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let out = child.stdout.take().context("the command's stdout")?;
    // Read here, not on a thread of its own: the command's exit is waited for only once
    // its output has ended, as it would be anyway.
    let (stdout, streamed) = read_output(out, stream);
    let status = child.wait().context("cannot wait for the command")?;
    let took = started.elapsed();
    signals.child.store(0, Ordering::SeqCst);
    let mut notes = Vec::new();
    let response = regular_file(&headers)
        .filter(|file| file.metadata().is_ok_and(|m| m.len() > 0))
        .and_then(|file| Response::read_from(file).ok());
    let usage = regular_file(&usage).and_then(|file| {
        let size = file.metadata().ok()?.len();
        match usage::read(file, Some(size)).ok()? {
            Some(bytes) => (!bytes.is_empty()).then_some(bytes),
            None => {
                notes.push(usage::TOO_LARGE.to_owned());
                None
            }
        }
    });
    Ok(Finished {
        status,
        stdout,
        streamed,
        response,
        usage,
        notes,
        interrupted: signals.interrupted(),
        took,
    })
}

/// The command's output: held back whole, or (`stream`) copied to our stdout as it comes;
/// and whether anything was streamed.
fn read_output(mut out: std::process::ChildStdout, stream: bool) -> (Vec<u8>, bool) {
    let mut held = Vec::new();
    if !stream {
        let _ = out.read_to_end(&mut held);
        return (held, false);
    }
    let mut streamed = false;
    let mut buf = [0u8; 8192];
    let mut ours = Some(io::stdout());
    while let Ok(n) = out.read(&mut buf) {
        if n == 0 {
            break;
        }
        streamed = true;
        // A reader of ours that went away stops the copy, not the command.
        if let Some(stdout) = &mut ours
            && stdout
                .write_all(&buf[..n])
                .and_then(|_| stdout.flush())
                .is_err()
        {
            ours = None;
        }
    }
    (held, streamed)
}

/// The file COMMAND left at `path`, when it is a regular file: a FIFO would block the
/// read, a device might never end.
fn regular_file(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Opened without waiting (a FIFO's open would wait for a writer), then looked at.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}
