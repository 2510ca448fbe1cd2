//! Per-core throughput of the ciphers a job's channel could use, in the
//! same run, interleaved:
//!
//! - ChaCha20-Poly1305 (ring): what noise encrypts every frame with, for
//!   public and private jobs alike;
//! - AES-128-GCM and AES-256-GCM (ring): what libp2p-tls would use;
//! - XSalsa20 (the `salsa20` crate): what libp2p-pnet added on top of noise
//!   for a job key, before the access gate replaced it.
//!
//! ```text
//! cargo run --release -p dac-benches --bin cipher_bench [-- --rounds ROUNDS]
//! ```
//!
//! Each round encrypts 64 MiB with every cipher, in 64 KiB records (a
//! noise frame is at most 64 KiB); the report is each cipher's median
//! throughput over the rounds (default 7), in GB/s on one core, and its
//! ratio to ChaCha20-Poly1305.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use dac_benches::cli;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use salsa20::XSalsa20;
use salsa20::cipher::{KeyIvInit, StreamCipher};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "cipher_bench",
    version,
    about = "Per-core throughput of ChaCha20-Poly1305, AES-128-GCM, AES-256-GCM and XSalsa20, \
             interleaved, as a Markdown table.",
    long_about = "Per-core throughput of ChaCha20-Poly1305 (what noise uses), AES-128-GCM and \
                  AES-256-GCM (what libp2p-tls would use) and XSalsa20 (what libp2p-pnet added), \
                  interleaved: each round encrypts 64 MiB with every cipher in 64 KiB records. \
                  The report is each cipher's median over the rounds, in GB/s on one core, and \
                  its ratio to ChaCha20-Poly1305.",
    after_help = "Exit status: 0, 1 when a cipher fails, 2 for bad arguments."
)]
struct Cli {
    /// Rounds to run, at least 1 (each encrypts 64 MiB with every cipher).
    #[arg(long, value_name = "ROUNDS", default_value_t = 7, value_parser = cli::positive)]
    rounds: usize,

    /// The old positional form of --rounds.
    #[arg(value_name = "ROUNDS", hide = true, conflicts_with = "rounds", value_parser = cli::positive)]
    rounds_positional: Option<usize>,
}

const TOTAL: usize = 64 << 20;
const RECORD: usize = 64 << 10;

#[derive(Clone, Copy, Debug)]
enum Cipher {
    ChaCha20Poly1305,
    Aes128Gcm,
    Aes256Gcm,
    XSalsa20,
}

impl Cipher {
    fn name(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "ChaCha20-Poly1305 (noise)",
            Cipher::Aes128Gcm => "AES-128-GCM (TLS)",
            Cipher::Aes256Gcm => "AES-256-GCM (TLS)",
            Cipher::XSalsa20 => "XSalsa20 (pnet, on top of noise)",
        }
    }

    /// Seconds to encrypt [`TOTAL`] bytes of `buf` in records.
    fn time(self, buf: &mut [u8]) -> Result<f64, String> {
        let key = [7u8; 32];
        let start = Instant::now();
        match self {
            Cipher::XSalsa20 => {
                let mut cipher = XSalsa20::new(&key.into(), &[9u8; 24].into());
                for record in buf.chunks_mut(RECORD) {
                    cipher.apply_keystream(record);
                }
            }
            aead_cipher => {
                let (algorithm, len) = match aead_cipher {
                    Cipher::Aes128Gcm => (&aead::AES_128_GCM, 16),
                    Cipher::Aes256Gcm => (&aead::AES_256_GCM, 32),
                    _ => (&aead::CHACHA20_POLY1305, 32),
                };
                let key = UnboundKey::new(algorithm, &key[..len])
                    .map_err(|_| "ring refused the key".to_string())?;
                let key = LessSafeKey::new(key);
                for (i, record) in buf.chunks_mut(RECORD).enumerate() {
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&(i as u64).to_le_bytes());
                    let tag = key
                        .seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::empty(),
                            record,
                        )
                        .map_err(|_| "ring failed to encrypt".to_string())?;
                    let _ = std::hint::black_box(tag);
                }
            }
        }
        std::hint::black_box(&buf);
        Ok(start.elapsed().as_secs_f64())
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let rounds = cli.rounds_positional.unwrap_or(cli.rounds);
    let ciphers = [
        Cipher::ChaCha20Poly1305,
        Cipher::Aes128Gcm,
        Cipher::Aes256Gcm,
        Cipher::XSalsa20,
    ];
    let mut buf = vec![0x5au8; TOTAL];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); ciphers.len()];
    for round in 0..rounds {
        // Rotate the order so that no cipher always runs first.
        for k in 0..ciphers.len() {
            let i = (k + round) % ciphers.len();
            let seconds = ciphers[i].time(&mut buf)?;
            rates[i].push(TOTAL as f64 / seconds / 1e9);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = rates.iter_mut().map(median).collect();
    println!("| cipher | GB/s on one core | ÷ ChaCha20-Poly1305 |");
    println!("|---|---|---|");
    for (cipher, rate) in ciphers.iter().zip(&medians) {
        println!(
            "| {} | {rate:.2} | {:.2} |",
            cipher.name(),
            rate / medians[0]
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(cli::parse("cipher_bench")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cipher_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
