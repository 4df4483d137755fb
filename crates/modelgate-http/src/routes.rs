//! A route table: every route of a server declared once with who may call
//! it, so its router is built from the table (a route not in it is
//! unreachable) and its documentation is the table itself.

/// One route: its method and path, who may call it (`A`, the server's
/// access kinds) and what answers it (`E`, the server's endpoints).
#[derive(Clone, Copy, Debug)]
pub struct Route<A, E> {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path, with `{parameters}`.
    pub path: &'static str,
    /// Who may call it.
    pub access: A,
    /// What answers it.
    pub endpoint: E,
}

impl<A, E> Route<A, E> {
    /// A route.
    pub const fn new(method: &'static str, path: &'static str, access: A, endpoint: E) -> Self {
        Self {
            method,
            path,
            access,
            endpoint,
        }
    }
}

/// The table as Markdown: method, `path` (headed `what`), and who may call
/// it as `describe` says.
pub fn markdown<A: Copy, E>(routes: &[Route<A, E>], what: &str, describe: impl Fn(A) -> &'static str) -> String {
    let mut out = format!("| method | {what} | who may call it |\n|---|---|---|\n");
    for r in routes {
        out.push_str(&format!("| {} | `{}` | {} |\n", r.method, r.path, describe(r.access)));
    }
    out
}
