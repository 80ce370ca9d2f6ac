//! Cleans serial text before anyone sees it.
//!
//! Under `qemu -kernel`, SeaBIOS runs first and writes terminal control sequences to
//! the serial port (`ESC c` resets the terminal, `ESC [?7l` turns off line wrap,
//! `ESC [2J` clears the screen) and leaves no line break before the kernel's first
//! line ("Booting from ROM..qmk: test a"). Passed through, they would wipe the user's
//! terminal and garble logs, so they are removed here; the protocol parser separately
//! tolerates text before `qmk: `.

/// `line` without terminal escape sequences and control characters (tabs are kept).
pub fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => skip_escape_sequence(&mut chars),
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Skips what follows an ESC: a CSI sequence (`[`, parameters, one final byte in
/// `@`..=`~`) or a single character (`ESC c`).
fn skip_escape_sequence(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    // `ESC c` and other two-character sequences end with the character after ESC.
    if chars.next() == Some('[') {
        for c in chars.by_ref() {
            if ('@'..='~').contains(&c) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seabios_preamble_is_cleaned() {
        assert_eq!(
            printable("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r"),
            "SeaBIOS (version 1.16.2)"
        );
    }

    #[test]
    fn plain_text_is_untouched() {
        assert_eq!(printable("qmk: test a ... ok"), "qmk: test a ... ok");
        assert_eq!(printable("a\tb"), "a\tb");
        assert_eq!(printable("µs ✓"), "µs ✓");
    }

    #[test]
    fn colours_and_stray_controls_go() {
        assert_eq!(printable("\x1b[31mred\x1b[0m\x07\x08"), "red");
        assert_eq!(printable("cut\x1b["), "cut");
        assert_eq!(printable("end\x1b"), "end");
    }
}
