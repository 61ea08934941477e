//! Reading a password for the command lines (`dfs-server init`, `dfs login`,
//! `dfs user add|passwd`): the first line of stdin, or a prompt on the terminal with echo
//! off. The one place dfs-common touches a terminal, kept here so that every binary
//! prompts the same way; nothing here stores or sends the password.

use std::io::{BufRead, Write};

/// Reads a password: the first line of stdin (`from_stdin`), or a prompt on the terminal
/// without echo. An empty password is refused.
pub fn read_password(prompt: &str, from_stdin: bool) -> Result<String, String> {
    let mut line = String::new();
    if from_stdin {
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
    } else {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        // SAFETY: termios calls on fd 0 with a properly sized struct.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            let tty = libc::tcgetattr(0, &mut t) == 0;
            let old = t;
            if tty {
                t.c_lflag &= !libc::ECHO;
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
            let r = std::io::stdin().lock().read_line(&mut line);
            if tty {
                libc::tcsetattr(0, libc::TCSANOW, &old);
                eprintln!();
            }
            r.map_err(|e| e.to_string())?;
        }
    }
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err("empty password".into());
    }
    Ok(pw)
}
