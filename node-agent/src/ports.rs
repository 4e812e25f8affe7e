//! Host ports for a task: the ones its spec names, and for any left at 0 a free one
//! from the node's range (not used by another task here, and bindable now).

use std::collections::BTreeSet;

use drover_api::kinds::node::PortRange;
use drover_api::kinds::task::TaskPort;

use crate::error::Error;

/// Resolves the Task's ports, in order; `in_use` are ports other tasks on this node hold.
pub fn resolve_ports(
    ports: &[TaskPort],
    range: PortRange,
    in_use: &BTreeSet<u16>,
) -> Result<Vec<u16>, Error> {
    let mut taken = in_use.clone();
    taken.extend(
        ports
            .iter()
            .filter_map(|p| u16::try_from(p.host_port).ok())
            .filter(|p| *p != 0),
    );
    let mut resolved = Vec::with_capacity(ports.len());
    for p in ports {
        let port = match u16::try_from(p.host_port) {
            Ok(port) if port != 0 => port,
            _ => {
                let port = free_port(range, &taken).ok_or(Error::NoFreePort {
                    begin: range.begin,
                    end: range.end,
                })?;
                taken.insert(port);
                port
            }
        };
        resolved.push(port);
    }
    Ok(resolved)
}

fn free_port(range: PortRange, taken: &BTreeSet<u16>) -> Option<u16> {
    let begin = u16::try_from(range.begin).ok()?;
    let end = u16::try_from(range.end).ok()?;
    (begin..=end)
        .find(|p| !taken.contains(p) && std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, host_port: i32) -> TaskPort {
        TaskPort {
            name: Some(name.into()),
            host_port,
            ..Default::default()
        }
    }

    #[test]
    fn zero_ports_get_free_ones_from_the_range() -> Result<(), Error> {
        let range = PortRange {
            begin: 31000,
            end: 32000,
        };
        let in_use: BTreeSet<u16> = (31000..31010).collect();
        let got = resolve_ports(
            &[port("a", 0), port("b", 31500), port("c", 0)],
            range,
            &in_use,
        )?;
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], 31500);
        assert!(got[0] >= 31010 && got[0] != 31500);
        assert!(got[2] > got[0] && got[2] != 31500);
        Ok(())
    }

    #[test]
    fn a_full_range_is_reported() {
        let range = PortRange {
            begin: 31000,
            end: 31001,
        };
        let in_use: BTreeSet<u16> = [31000, 31001].into();
        let err = resolve_ports(&[port("a", 0)], range, &in_use).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("no free host port in 31000-31001".into())
        );
    }
}
