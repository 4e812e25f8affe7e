//! The syscalls on process groups the process driver needs: signal a group, and tell
//! whether a process or a group still has live (non-zombie) members.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::DriverError;

/// Sends `signal` to the group `pgid`; a group that is already gone is not an error.
pub fn signal_group(pgid: i32, signal: Signal) -> Result<(), DriverError> {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(source) => Err(DriverError::Signal { pgid, source }),
    }
}

/// `(state, pgrp)` of a process, from `/proc/<pid>/stat`.
fn stat(pid: &str) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// The process exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    stat(&pid.to_string()).is_some_and(|(state, _)| state != 'Z')
}

/// Some process of group `pgid` exists and is not a zombie (zombies are ignored: an
/// orphan reaped late by init must not stretch a kill to its full grace period).
pub fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            return false;
        };
        name.bytes().all(|b| b.is_ascii_digit())
            && stat(name).is_some_and(|(state, pgrp)| pgrp == pgid && state != 'Z')
    })
}
