//! Namespace routing: which backend holds which namespace.
//!
//! A cluster often keeps different repositories in different places: tags
//! in one store, `library/.*` in a bucket, a pull-through mirror for
//! everything else. [`NamespaceRouter`] holds the ordered routes, answers
//! which backend a namespace uses, and is itself a [`Backend`] so that an
//! origin holds one `Arc<dyn Backend>` however routing is configured.
//!
//! Every pattern is anchored: `library/.*` is compiled as
//! `^(?:library/.*)$` and so matches `library/ubuntu` but not
//! `foo/library/x`. The system we follow matched patterns unanchored, a
//! known source of namespaces silently landing in the wrong backend.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use kraken_core::{
    Backend, BackendError, BackendStream, Capabilities, ListPage, Namespace, ObjectInfo, UploadBody,
};
use regex::Regex;

use crate::Error;

/// One route: a pattern as configured, its anchored regex, its backend.
#[derive(Debug)]
struct Route {
    pattern: String,
    regex: Regex,
    backend: Arc<dyn Backend>,
}

/// Routes namespaces to backends by the first matching anchored regex.
#[derive(Debug)]
pub struct NamespaceRouter {
    routes: Vec<Route>,
}

impl NamespaceRouter {
    /// Compiles `routes`, in order of precedence, anchoring each pattern.
    ///
    /// # Errors
    ///
    /// [`Error::BadPattern`] naming the first pattern that is not a valid
    /// regex.
    pub fn new<P: Into<String>>(
        routes: impl IntoIterator<Item = (P, Arc<dyn Backend>)>,
    ) -> Result<Self, Error> {
        let routes = routes
            .into_iter()
            .map(|(pattern, backend)| {
                let pattern = pattern.into();
                match Regex::new(&format!("^(?:{pattern})$")) {
                    Ok(regex) => Ok(Route {
                        pattern,
                        regex,
                        backend,
                    }),
                    Err(source) => Err(Error::BadPattern { pattern, source }),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(NamespaceRouter { routes })
    }

    /// Returns the backend of the first route whose pattern matches
    /// `namespace` whole.
    ///
    /// # Errors
    ///
    /// [`Error::NoRoute`] when no pattern matches.
    pub fn route(&self, namespace: &Namespace) -> Result<&Arc<dyn Backend>, Error> {
        self.routes
            .iter()
            .find(|r| r.regex.is_match(namespace.as_str()))
            .map(|r| &r.backend)
            .ok_or_else(|| Error::NoRoute {
                namespace: namespace.clone(),
            })
    }

    /// Checks that pushes to `what` can be stored, for start-up checks of
    /// the namespaces a proxy accepts pushes for.
    ///
    /// `what` is first taken as a namespace, checked against the backend it
    /// routes to; when it is not a valid namespace (`library/.*`), it must
    /// be written exactly as one of the routes' patterns, and that route's
    /// backend is checked.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] when the backend cannot store uploads;
    /// [`Error::NoRoute`] or [`Error::UnknownPattern`] when `what` routes
    /// nowhere.
    pub fn require_writable(&self, what: &str) -> Result<(), Error> {
        let backend = match Namespace::new(what) {
            Ok(namespace) => self.route(&namespace)?,
            Err(_) => {
                let route = self.routes.iter().find(|r| r.pattern == what);
                let route = route.ok_or_else(|| Error::UnknownPattern {
                    pattern: what.to_owned(),
                })?;
                &route.backend
            }
        };
        if backend.capabilities().write {
            return Ok(());
        }
        Err(Error::ReadOnly {
            what: what.to_owned(),
            backend: backend.kind(),
        })
    }

    /// Returns the backend for an operation, or the error a caller of that
    /// operation expects when nothing matches.
    fn backend_for(
        &self,
        namespace: &Namespace,
        missing: fn(String) -> BackendError,
    ) -> Result<&Arc<dyn Backend>, BackendError> {
        self.route(namespace).map_err(|e| missing(e.to_string()))
    }
}

#[async_trait]
impl Backend for NamespaceRouter {
    fn kind(&self) -> &'static str {
        "router"
    }

    /// Returns what at least one route supports; a namespace whose route
    /// lacks it still fails with `Unsupported`.
    fn capabilities(&self) -> Capabilities {
        let caps = self.routes.iter().map(|r| r.backend.capabilities());
        caps.fold(
            Capabilities {
                write: false,
                list: false,
            },
            |all, c| Capabilities {
                write: all.write || c.write,
                list: all.list || c.list,
            },
        )
    }

    /// Stats the object in its namespace's backend; with no route, the
    /// object cannot exist and the answer is `NotFound`.
    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        let backend = self.backend_for(namespace, BackendError::not_found)?;
        backend.stat(namespace, name).await
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        let backend = self.backend_for(namespace, BackendError::not_found)?;
        backend.download(namespace, name, range).await
    }

    /// Uploads to the namespace's backend; with no route, `Unsupported`.
    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        let backend = self.backend_for(namespace, BackendError::unsupported)?;
        backend.upload(namespace, name, length, body).await
    }

    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        let backend = self.backend_for(namespace, BackendError::unsupported)?;
        backend.list(namespace, prefix, page, limit).await
    }
}
