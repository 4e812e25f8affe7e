//! A writer for the crash-recovery test: opens the embedded store in the directory given
//! as its first argument and writes, under `/crash/<TAG>/`, keys from several concurrent tasks forever, printing
//! `ack <key> <revision>` for each write the store acknowledged. The test SIGKILLs it.

use std::io::Write;
use std::sync::Arc;

use drover_store::{EmbeddedStore, Store};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(tag)) = (args.next(), args.next()) else {
        eprintln!("usage: store-crash-writer DIR TAG");
        std::process::exit(2);
    };
    let store = match EmbeddedStore::open(&dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("store-crash-writer: {e}");
            std::process::exit(1);
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for w in 0..8 {
        let store = store.clone();
        let tx = tx.clone();
        let tag = tag.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let key = format!("/crash/{tag}/{w}/{i:08}");
                let value = format!("{{\"writer\":{w},\"i\":{i}}}").into_bytes();
                match store.create(&key, value, 0).await {
                    Ok(rev) => {
                        if tx.send(format!("ack {key} {rev}")).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        eprintln!("store-crash-writer: {e}");
                        std::process::exit(1);
                    }
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}
