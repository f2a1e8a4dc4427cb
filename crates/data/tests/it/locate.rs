//! Finding the data file, and the download path exercised offline: an unreachable
//! port, and a one-shot HTTP server on loopback serving good, wrong and cut bodies.

#[cfg(feature = "download")]
use std::io::{Read, Write};
#[cfg(feature = "download")]
use std::net::TcpListener;
use std::path::Path;

use cxr_data::{DataError, DataLocator};

use crate::check;

/// File names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Serves one HTTP request on loopback with `status`, a `Content-Length` of
/// `declared` and `body` (shorter than declared = cut transfer); returns the URL.
#[cfg(feature = "download")]
fn serve_once(status: &'static str, body: Vec<u8>, declared: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://{addr}/pneumoniamnist.npz")
}

#[cfg(feature = "download")]
fn md5_hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    cxr_data::md5_file(&p).unwrap()
}

#[test]
fn constants() {
    assert_eq!(
        cxr_data::PNEUMONIAMNIST_URL,
        "https://zenodo.org/record/6496656/files/pneumoniamnist.npz?download=1"
    );
    assert_eq!(
        cxr_data::PNEUMONIAMNIST_MD5,
        "28209eda62fecd6e6a2d98b1501bb15f"
    );
    let d = DataLocator::default();
    assert_eq!(d.default_dir, Path::new("data"));
    assert!(d.allow_download && d.explicit.is_none() && d.env_dir.is_none());
    assert_eq!(d.url, cxr_data::PNEUMONIAMNIST_URL);
}

#[test]
fn locator_search_order() {
    let dir = tempfile::tempdir().unwrap();
    let env_dir = dir.path().join("env");
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&env_dir).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("x.npz"), b"d").unwrap();
    let loc = DataLocator {
        env_dir: Some(env_dir.clone()),
        default_dir: data_dir.clone(),
        allow_download: false,
        ..Default::default()
    };
    assert_eq!(loc.locate("x.npz").unwrap(), data_dir.join("x.npz"));
    std::fs::write(env_dir.join("x.npz"), b"e").unwrap();
    assert_eq!(loc.locate("x.npz").unwrap(), env_dir.join("x.npz"));
    // explicit folder, explicit file (any name, any md5), explicit beats the others
    let other = dir.path().join("mine.bin");
    std::fs::write(&other, b"m").unwrap();
    for (explicit, expected) in [
        (env_dir.clone(), env_dir.join("x.npz")),
        (other.clone(), other.clone()),
    ] {
        let l = DataLocator {
            explicit: Some(explicit),
            ..loc.clone()
        };
        assert_eq!(l.locate("x.npz").unwrap(), expected);
    }
    // explicit but missing: an error, never a fallback to the other places
    let missing = DataLocator {
        explicit: Some(dir.path().join("nope.npz")),
        ..loc.clone()
    };
    check(
        missing.locate("x.npz"),
        |e| matches!(e, DataError::NotFound { tried, .. } if tried.len() == 1),
        &["nope.npz", "--data"],
    );
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let missing = DataLocator {
        explicit: Some(empty_dir.clone()),
        ..loc.clone()
    };
    check(
        missing.locate("x.npz"),
        |e| matches!(e, DataError::NotFound { tried, .. } if tried == &vec![empty_dir.join("x.npz")]),
        &["does not hold x.npz", "--data"],
    );
}

#[test]
fn offline_not_found_lists_paths_and_how_to_supply() {
    let dir = tempfile::tempdir().unwrap();
    let env_dir = dir.path().join("env");
    let loc = DataLocator {
        env_dir: Some(env_dir.clone()),
        default_dir: dir.path().join("data"),
        allow_download: false,
        ..Default::default()
    };
    let tried_expected = vec![env_dir.join("y.npz"), dir.path().join("data/y.npz")];
    check(
        loc.locate("y.npz"),
        |e| matches!(e, DataError::NotFound { tried, file, .. } if tried == &tried_expected && file == "y.npz"),
        &["y.npz", "env/y.npz", "data/y.npz", "CXR_DATA_DIR", "--data"],
    );
}

#[test]
fn unreachable_download_fails_cleanly_and_leaves_no_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("keep.txt"), b"k").unwrap();
    let dl = DataLocator {
        default_dir: data_dir.clone(),
        url: "http://127.0.0.1:9/pneumoniamnist.npz".into(),
        ..Default::default()
    };
    check(
        dl.locate("z.npz"),
        |e| matches!(e, DataError::NotFound { .. }),
        &[
            "z.npz",
            "download failed",
            "127.0.0.1:9",
            "--data",
            "CXR_DATA_DIR",
        ],
    );
    check(
        dl.download(&data_dir.join("z.npz")),
        |e| matches!(e, DataError::Download { url, .. } if url.contains("127.0.0.1:9")),
        &["127.0.0.1:9"],
    );
    assert_eq!(names(&data_dir), ["keep.txt"]);
}

#[cfg(feature = "download")]
#[test]
fn download_verifies_md5_then_renames() {
    let body = b"pretend this is an npz".to_vec();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data"); // created by the download
    let dl = DataLocator {
        default_dir: data_dir.clone(),
        url: serve_once("200 OK", body.clone(), body.len()),
        md5: md5_hex(&body),
        ..Default::default()
    };
    let p = dl.locate("got.npz").unwrap();
    assert_eq!(p, data_dir.join("got.npz"));
    assert_eq!(std::fs::read(&p).unwrap(), body);
    assert_eq!(names(&data_dir), ["got.npz"]);
    // found locally the next time: no server needed
    let again = DataLocator {
        url: "http://127.0.0.1:9/".into(),
        ..dl
    };
    assert_eq!(again.locate("got.npz").unwrap(), p);
}

#[cfg(feature = "download")]
#[test]
fn md5_mismatch_deletes_the_part_file() {
    let body = b"tampered".to_vec();
    let dir = tempfile::tempdir().unwrap();
    let dl = DataLocator {
        default_dir: dir.path().to_path_buf(),
        url: serve_once("200 OK", body.clone(), body.len()),
        ..Default::default()
    };
    check(
        dl.locate("bad.npz"),
        |e| {
            matches!(e, DataError::Checksum { expected, actual, .. }
                if expected == cxr_data::PNEUMONIAMNIST_MD5 && actual == &md5_hex(b"tampered"))
        },
        &["bad.npz", "28209eda62fecd6e6a2d98b1501bb15f"],
    );
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[cfg(feature = "download")]
#[test]
fn http_error_and_cut_transfer_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    for (status, body, declared) in [
        ("404 Not Found", b"no".to_vec(), 2),
        ("200 OK", vec![7u8; 100], 1000),
    ] {
        let dl = DataLocator {
            default_dir: dir.path().to_path_buf(),
            url: serve_once(status, body, declared),
            ..Default::default()
        };
        check(
            dl.download(&dir.path().join("cut.npz")),
            |e| matches!(e, DataError::Download { .. }),
            &["127.0.0.1"],
        );
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }
}
