//! [`Backend`](kraken_core::Backend) implementations: where origins and
//! build-index keep the source of truth for blobs and tags.
//!
//! - [`fs::FsBackend`]: a directory tree on a local or mounted filesystem,
//!   the embedded default.
//! - [`http::HttpBackend`]: any HTTP file server described by URL
//!   templates, such as nginx with WebDAV `PUT` and JSON autoindex.
//! - [`s3::S3Backend`]: an Amazon S3 bucket or an S3-compatible store
//!   (Garage, Ceph RGW, MinIO), with multipart uploads for large objects.
//! - `gcs::GcsBackend` and `azure::AzureBackend` (features `gcs` and
//!   `azure`): Google Cloud Storage and Azure Blob Storage, the same way.
//! - `webhdfs::WebHdfsBackend` (feature `webhdfs`): HDFS through its
//!   WebHDFS REST API.
//! - [`registry::RegistryBackend`]: any OCI or Docker registry as a
//!   read-only pull-through source, with the Bearer token flow.
//! - [`router::NamespaceRouter`]: picks a backend per namespace by anchored
//!   regex, and is a backend itself, so an origin holds one
//!   `Arc<dyn Backend>` whatever the routing.
//! - [`wrappers`]: [`Retry`](wrappers::Retry), [`Timeout`](wrappers::Timeout),
//!   [`Throttle`](wrappers::Throttle) and [`Observed`](wrappers::Observed),
//!   which wrap any backend and are backends themselves.
//! - [`config`]: the `[[backends]]` routes of a config file, built into one
//!   routed, wrapped backend with start-up checks.
//! - [`verify::fetch_verified`]: downloads a blob by digest and refuses
//!   bytes that do not hash to it.
//!
//! Every backend and wrapper here passes `kraken_core::testkit::backend_suite`
//! against a real server (the registry backend its read-only part), except
//! GCS, which no emulator from the package registries can serve, and
//! WebHDFS, which passes it against an in-test fake of the API.
//! [`layout::Layout`] picks how the filesystem and object-store backends
//! map names to paths; `https://` goes over rustls on ring, trusting what
//! each backend's [`TlsOptions`] names.
//!
//! Failures of backend operations are [`BackendError`](kraken_core::BackendError)s;
//! configuration and routing failures are this crate's [`Error`].

#[cfg(feature = "azure")]
pub mod azure;
pub mod config;
mod error;
pub mod fs;
#[cfg(feature = "gcs")]
pub mod gcs;
pub mod http;
pub mod layout;
mod names;
mod object;
pub mod registry;
pub mod router;
pub mod s3;
mod status;
mod transport;
pub mod verify;
#[cfg(feature = "webhdfs")]
pub mod webhdfs;
pub mod wrappers;

pub use error::Error;
pub use transport::TlsOptions;
