//! Feasibility filters: does one more instance fit on this node? A rejection carries
//! the reason in the words `status` and Events use ("insufficient memMiB").

use drover_api::ParsedConstraint;

use crate::allocator::inventory::NodeState;
use crate::allocator::placement::Request;

/// Why a node cannot take the instance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    NotReady,
    Unschedulable,
    Insufficient(&'static str),
    Ports,
    /// A fixed host port is taken on the node.
    PortInUse(u16),
    Constraint(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NotReady => f.write_str("node not ready"),
            Rejection::Unschedulable => f.write_str("node unschedulable"),
            Rejection::Insufficient(what) => write!(f, "insufficient {what}"),
            Rejection::Ports => f.write_str("insufficient ports"),
            Rejection::PortInUse(p) => write!(f, "port {p} in use"),
            Rejection::Constraint(c) => write!(f, "constraint {c}"),
        }
    }
}

pub trait Filter: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self, req: &Request<'_>, node: &NodeState) -> Result<(), Rejection>;
}

pub struct NodeCondition;

impl Filter for NodeCondition {
    fn name(&self) -> &'static str {
        "NodeCondition"
    }
    fn check(&self, _: &Request<'_>, node: &NodeState) -> Result<(), Rejection> {
        if !node.ready {
            Err(Rejection::NotReady)
        } else if !node.schedulable {
            Err(Rejection::Unschedulable)
        } else {
            Ok(())
        }
    }
}

pub struct ResourcesFit;

impl Filter for ResourcesFit {
    fn name(&self) -> &'static str {
        "ResourcesFit"
    }
    fn check(&self, req: &Request<'_>, node: &NodeState) -> Result<(), Rejection> {
        match node.free().shortfall(&req.resources) {
            Some(what) => Err(Rejection::Insufficient(what)),
            None => Ok(()),
        }
    }
}

pub struct PortsFit;

impl Filter for PortsFit {
    fn name(&self) -> &'static str {
        "PortsFit"
    }
    fn check(&self, req: &Request<'_>, node: &NodeState) -> Result<(), Rejection> {
        if node.ports.free_count() < req.ports {
            Err(Rejection::Ports)
        } else {
            Ok(())
        }
    }
}

/// Marathon constraints, against the values of the nodes the App's other instances
/// already run on.
pub struct Constraints;

impl Filter for Constraints {
    fn name(&self) -> &'static str {
        "Constraints"
    }
    fn check(&self, req: &Request<'_>, node: &NodeState) -> Result<(), Rejection> {
        for c in req.constraints {
            let field = &c.parsed.field;
            let placed: Vec<&str> = req.placed.iter().filter_map(|n| n.field(field)).collect();
            if !c.parsed.matches(node.field(field), &placed) {
                return Err(Rejection::Constraint(c.text.clone()));
            }
        }
        Ok(())
    }
}

/// A parsed constraint and how a person wrote it (`hostname:UNIQUE`), for messages.
#[derive(Clone, Debug)]
pub struct NamedConstraint {
    pub parsed: ParsedConstraint,
    pub text: String,
}

impl NamedConstraint {
    pub fn from_rule(
        rule: &drover_api::ConstraintRule,
    ) -> Result<Self, drover_api::constraint::ConstraintError> {
        let text = match &rule.value {
            Some(v) => format!("{}:{}:{v}", rule.field, rule.operator),
            None => format!("{}:{}", rule.field, rule.operator),
        };
        Ok(NamedConstraint {
            parsed: rule.parse()?,
            text,
        })
    }
}

/// The fixed pipeline order: cheap checks first.
pub fn default_filters() -> Vec<Box<dyn Filter>> {
    vec![
        Box::new(NodeCondition),
        Box::new(ResourcesFit),
        Box::new(PortsFit),
        Box::new(Constraints),
    ]
}
