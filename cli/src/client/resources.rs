//! Kind ↔ URL through drover-api's registry: what `app`, `apps`, `app/web` name on the
//! command line, the collection / item / subresource paths, and the names kubectl
//! prints (`app.drover.dev/web`, `apps.drover.dev "web"`).

use anyhow::{anyhow, bail};
use drover_api::{find_kind, KindInfo, GROUP, VERSION};

/// The kind a command-line word names, as kubectl resolves resource types.
pub fn resolve_kind(word: &str) -> anyhow::Result<&'static KindInfo> {
    let lowered = word.to_ascii_lowercase();
    find_kind(word)
        .or_else(|| find_kind(&lowered))
        .ok_or_else(|| {
            anyhow!(
                "the server doesn't have a resource type \"{word}\" (try `drover api-resources`)"
            )
        })
}

/// Where an object lives: its kind, and its namespace for namespaced kinds.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub info: &'static KindInfo,
    /// Ignored for cluster-scoped kinds; `None` means every namespace (lists only).
    pub namespace: Option<&'a str>,
}

impl<'a> Scope<'a> {
    pub fn new(info: &'static KindInfo, namespace: Option<&'a str>) -> Self {
        Scope { info, namespace }
    }

    fn prefix(&self) -> String {
        match self.namespace {
            Some(ns) if self.info.namespaced => {
                format!("/apis/{GROUP}/{VERSION}/namespaces/{ns}")
            }
            _ => format!("/apis/{GROUP}/{VERSION}"),
        }
    }

    /// `…/namespaces/{ns}/{plural}` (or every namespace, or cluster-scoped).
    pub fn collection(&self) -> String {
        format!("{}/{}", self.prefix(), self.info.plural)
    }

    /// `…/{plural}/{name}`.
    pub fn item(&self, name: &str) -> String {
        format!("{}/{name}", self.collection())
    }

    /// `…/{plural}/{name}/{sub}` (`status`, `scale`).
    pub fn subresource(&self, name: &str, sub: &str) -> String {
        format!("{}/{name}/{sub}", self.collection())
    }
}

/// `app.drover.dev`: the singular name qualified by the group, as kubectl prints it.
pub fn qualified_singular(info: &KindInfo) -> String {
    format!("{}.{GROUP}", info.singular)
}

/// `app.drover.dev/web`.
pub fn object_ref(info: &KindInfo, name: &str) -> String {
    format!("{}/{name}", qualified_singular(info))
}

/// `app.drover.dev "web"`.
pub fn quoted_ref(info: &KindInfo, name: &str) -> String {
    format!("{} \"{name}\"", qualified_singular(info))
}

/// The objects a command line names: `KIND NAME…` or `KIND/NAME…`.
pub struct Named {
    pub objects: Vec<(&'static KindInfo, String)>,
}

/// What `get` was asked for: a whole kind or named objects.
pub enum Selection {
    Kind(&'static KindInfo),
    Objects(Named),
}

/// Parses `KIND [NAME…]` or `KIND/NAME…`.
pub fn select(args: &[String]) -> anyhow::Result<Selection> {
    let Some(first) = args.first() else {
        bail!("you must specify the type of resource to get (for instance `app`; see `drover api-resources`)");
    };
    if first.contains('/') {
        let mut objects = Vec::new();
        for arg in args {
            let (kind, name) = arg.split_once('/').ok_or_else(|| {
                anyhow!("there is no need to give a resource type as a separate argument when using the KIND/NAME form: {arg:?}")
            })?;
            if name.is_empty() || name.contains('/') {
                bail!("{arg:?} is not KIND/NAME");
            }
            objects.push((resolve_kind(kind)?, name.to_string()));
        }
        return Ok(Selection::Objects(Named { objects }));
    }
    let info = resolve_kind(first)?;
    if args.len() == 1 {
        return Ok(Selection::Kind(info));
    }
    Ok(Selection::Objects(Named {
        objects: args[1..].iter().map(|n| (info, n.clone())).collect(),
    }))
}

/// Like [`select`], for commands that need at least one named object.
pub fn select_named(args: &[String], verb: &str) -> anyhow::Result<Named> {
    match select(args)? {
        Selection::Objects(named) => Ok(named),
        Selection::Kind(info) => bail!(
            "{verb}: name the {} to act on (`drover {verb} {} NAME` or `{}/NAME`)",
            info.singular,
            info.singular,
            info.singular
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn kinds_resolve_by_any_name() {
        for word in ["App", "app", "apps", "APPS"] {
            assert_eq!(resolve_kind(word).map(|k| k.kind).ok(), Some("App"));
        }
        let e = resolve_kind("pods").err().map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("resource type \"pods\""));
    }

    #[test]
    fn paths() {
        let app = resolve_kind("app").expect("app");
        let node = resolve_kind("node").expect("node");
        let s = Scope::new(app, Some("default"));
        assert_eq!(
            s.item("web"),
            "/apis/drover.dev/v1alpha1/namespaces/default/apps/web"
        );
        assert_eq!(
            s.subresource("web", "scale"),
            "/apis/drover.dev/v1alpha1/namespaces/default/apps/web/scale"
        );
        assert_eq!(
            Scope::new(app, None).collection(),
            "/apis/drover.dev/v1alpha1/apps"
        );
        assert_eq!(
            Scope::new(node, Some("default")).item("n1"),
            "/apis/drover.dev/v1alpha1/nodes/n1"
        );
        assert_eq!(object_ref(app, "web"), "app.drover.dev/web");
        assert_eq!(quoted_ref(app, "web"), "app.drover.dev \"web\"");
    }

    #[test]
    fn selections() {
        assert!(matches!(select(&words("apps")), Ok(Selection::Kind(k)) if k.kind == "App"));
        let Ok(Selection::Objects(named)) = select(&words("app web api")) else {
            panic!("named");
        };
        assert_eq!(named.objects.len(), 2);
        let Ok(Selection::Objects(named)) = select(&words("app/web node/n1")) else {
            panic!("kind/name");
        };
        assert_eq!(named.objects[1].0.kind, "Node");
        assert!(select(&words("app/web api")).is_err());
        assert!(select(&[]).is_err());
        assert!(select_named(&words("apps"), "delete").is_err());
    }
}
