//! `kraken blob push` and `kraken blob pull`: generic blobs into a cluster
//! through its origins, and out of it through an agent, with a progress
//! bar on standard error.
//!
//! A push hashes the file (its SHA-256 is its name), then uploads it to the
//! digest's owning origin, which verifies it again, copies it to the other
//! owners and queues the write-back. A pull streams the blob from the
//! agent's blob API and checks the digest of what it wrote.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use kraken_core::{Algorithm, BlobReader, Digest, Hasher, Namespace};
use kraken_p2p::origin::{OriginClient, OriginClientConfig};

use crate::cli::BlobCommand;

/// Runs a `kraken blob` subcommand.
///
/// # Errors
///
/// Bad arguments, an unreadable file, an unreachable cluster, or bytes that
/// do not match the digest.
pub async fn run(command: BlobCommand) -> anyhow::Result<()> {
    match command {
        BlobCommand::Push {
            file,
            origins,
            namespace,
            quiet,
        } => {
            let namespace = Namespace::new(namespace).context("--namespace")?;
            let digest = push(&file, &origins, &namespace, quiet).await?;
            println!("{digest}");
            Ok(())
        }
        BlobCommand::Pull {
            digest,
            agent,
            namespace,
            output,
            quiet,
        } => {
            let namespace = Namespace::new(namespace).context("--namespace")?;
            let digest: Digest = digest
                .parse()
                .with_context(|| format!("{digest:?} is not a digest like sha256:<64 hex>"))?;
            pull(
                &digest,
                &agent.to_string(),
                &namespace,
                output.as_deref(),
                quiet,
            )
            .await
        }
    }
}

fn bar(length: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

async fn push(
    file: &Path,
    origins: &[String],
    namespace: &Namespace,
    quiet: bool,
) -> anyhow::Result<Digest> {
    let reader = FileReader::open(file)?;
    let hashing = bar(reader.len(), "hashing", quiet);
    let digest = hash(file.to_owned(), hashing.clone()).await?;
    hashing.finish_and_clear();
    let uploading = bar(reader.len(), "uploading", quiet);
    let client = OriginClient::new(origins.iter().cloned(), OriginClientConfig::default())
        .context("--origin")?;
    let blob = Arc::new(Counted {
        inner: reader,
        bar: uploading.clone(),
    });
    client
        .upload(namespace, &digest, blob)
        .await
        .with_context(|| format!("uploading {} to {}", file.display(), origins.join(", ")))?;
    uploading.finish_and_clear();
    Ok(digest)
}

async fn hash(file: PathBuf, bar: ProgressBar) -> anyhow::Result<Digest> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<Digest> {
        let mut input =
            File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
        let mut hasher = Hasher::new(Algorithm::Sha256);
        let mut buffer = vec![0; 1 << 20];
        loop {
            let n = input.read(&mut buffer)?;
            if n == 0 {
                return Ok(hasher.finish());
            }
            hasher.update(&buffer[..n]);
            bar.inc(n as u64);
        }
    })
    .await?
}

async fn pull(
    digest: &Digest,
    agent: &str,
    namespace: &Namespace,
    output: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<()> {
    let ns = kraken_registry::http::segment(namespace.as_str());
    let url = format!("http://{agent}/namespace/{ns}/blobs/{digest}");
    let http = kraken_p2p::http_tls::client_builder(None)?.build()?;
    let response = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the agent at {agent}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("the agent answered {status}: {}", body.trim());
    }
    let length = response.content_length().unwrap_or(0);
    let progress = bar(length, "pulling", quiet);
    let mut sink: Box<dyn Write + Send> = match output {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut hasher = Hasher::new(digest.algorithm());
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the download broke off")?;
        hasher.update(&chunk);
        sink.write_all(&chunk)?;
        progress.inc(chunk.len() as u64);
    }
    sink.flush()?;
    progress.finish_and_clear();
    let actual = hasher.finish();
    if actual != *digest {
        bail!("the bytes received hash to {actual}, not {digest}");
    }
    Ok(())
}

/// A file as a [`BlobReader`], read with positional reads.
#[derive(Debug)]
struct FileReader {
    file: Arc<File>,
    length: u64,
}

impl FileReader {
    fn open(path: &Path) -> anyhow::Result<FileReader> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let length = file.metadata()?.len();
        Ok(FileReader {
            file: Arc::new(file),
            length,
        })
    }
}

#[async_trait]
impl BlobReader for FileReader {
    fn len(&self) -> u64 {
        self.length
    }

    async fn read_at(&self, offset: u64, len: usize) -> kraken_core::Result<Bytes> {
        let file = self.file.clone();
        let len = usize::try_from(self.length.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(len);
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buffer = vec![0; len];
            file.read_exact_at(&mut buffer, offset)?;
            Ok(Bytes::from(buffer))
        })
        .await
        .map_err(|e| kraken_core::Error::Io(std::io::Error::other(e)))?
    }
}

/// A reader that moves a progress bar as bytes are read.
#[derive(Debug)]
struct Counted {
    inner: FileReader,
    bar: ProgressBar,
}

#[async_trait]
impl BlobReader for Counted {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    async fn read_at(&self, offset: u64, len: usize) -> kraken_core::Result<Bytes> {
        let bytes = self.inner.read_at(offset, len).await?;
        self.bar.set_position(offset + bytes.len() as u64);
        Ok(bytes)
    }
}
