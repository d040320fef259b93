use std::io::Read;

use super::*;

fn line(i: u32) -> Vec<u8> {
    format!("line-{i:02}\n").into_bytes()
}

fn lines(range: std::ops::RangeInclusive<u32>) -> String {
    range.map(|i| String::from_utf8(line(i)).unwrap()).collect()
}

/// Writes lines 1 to 10 (8 bytes each) into files of 3 lines at most.
fn write_ten(path: &Path, backups: u32, compress: bool) -> Tally {
    let mut file = RotatingFile::new(path, 24, backups, compress);
    let mut tally = Tally::default();
    for i in 1..=10 {
        file.append(&line(i), &mut tally);
    }
    file.flush(&mut tally);
    tally
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn rotates_at_the_limit_and_keeps_the_newest_backups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/events.log");
    let tally = write_ten(&path, 2, false);
    assert_eq!((tally.written, tally.failed, tally.error), (10, 0, None));
    assert_eq!(
        names(&dir.path().join("logs")),
        ["events.log", "events.log.1", "events.log.2"]
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), lines(10..=10));
    assert_eq!(
        fs::read_to_string(dir.path().join("logs/events.log.1")).unwrap(),
        lines(7..=9)
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("logs/events.log.2")).unwrap(),
        lines(4..=6)
    );
}

#[test]
fn compressed_backups_hold_the_exact_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let tally = write_ten(&path, 5, true);
    assert_eq!((tally.written, tally.failed), (10, 0));
    assert_eq!(
        names(dir.path()),
        ["events.log", "events.log.1.gz", "events.log.2.gz", "events.log.3.gz"]
    );
    let gunzip = |name: &str| {
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(dir.path().join(name)).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    assert_eq!(gunzip("events.log.1.gz"), lines(7..=9));
    assert_eq!(gunzip("events.log.2.gz"), lines(4..=6));
    assert_eq!(gunzip("events.log.3.gz"), lines(1..=3));
    assert_eq!(fs::read_to_string(&path).unwrap(), lines(10..=10));
}

#[test]
fn a_file_written_before_counts_towards_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    fs::write(&path, lines(1..=2)).unwrap();
    let mut file = RotatingFile::new(&path, 24, 1, false);
    let mut tally = Tally::default();
    for i in 3..=4 {
        file.append(&line(i), &mut tally);
    }
    file.flush(&mut tally);
    assert_eq!(fs::read_to_string(&path).unwrap(), lines(4..=4));
    assert_eq!(
        fs::read_to_string(dir.path().join("events.log.1")).unwrap(),
        lines(1..=3)
    );
}

#[test]
fn a_full_disk_loses_the_lines_and_says_why() {
    let mut file = RotatingFile::new("/dev/full", 1 << 20, 1, false);
    let mut tally = Tally::default();
    file.append(&line(1), &mut tally);
    file.append(&line(2), &mut tally);
    file.flush(&mut tally);
    assert_eq!(tally.written, 0);
    assert_eq!(tally.failed, 2);
    assert_eq!(
        tally.error.as_deref(),
        Some("cannot write /dev/full: No space left on device (os error 28)")
    );
}

#[test]
fn writing_resumes_when_the_directory_can_be_made() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("logs");
    fs::write(&blocker, "a file where the directory should be").unwrap();
    let path = blocker.join("events.log");
    let mut file = RotatingFile::new(&path, 1 << 20, 1, false);
    let mut tally = Tally::default();
    file.append(&line(1), &mut tally);
    file.flush(&mut tally);
    assert_eq!((tally.written, tally.failed), (0, 1));
    assert_eq!(
        tally.error,
        Some(format!("cannot write {}: File exists (os error 17)", path.display()))
    );

    fs::remove_file(&blocker).unwrap();
    let mut tally = Tally::default();
    file.append(&line(2), &mut tally);
    file.flush(&mut tally);
    assert_eq!((tally.written, tally.failed, tally.error), (1, 0, None));
    assert_eq!(fs::read_to_string(&path).unwrap(), lines(2..=2));
}
