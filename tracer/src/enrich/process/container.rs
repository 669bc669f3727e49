//! The cgroup v2 path of a process, and the container id in it.

/// Runtime-specific systemd scope prefixes: `<prefix><container id>.scope`.
const SCOPE_PREFIXES: &[&str] = &["docker-", "cri-containerd-", "crio-", "libpod-"];
/// Shortest id accepted in a runtime scope name (Docker's short id length).
const MIN_SCOPE_ID_LEN: usize = 12;
/// Full container ids, the only ones trusted as bare path components (`/docker/<id>`).
const FULL_ID_LEN: usize = 64;

/// The path of the cgroup v2 line (`0::/path`).
pub(super) fn cgroup_v2_path(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

/// The container id in the first /proc/PID/cgroup line (v2 or v1) whose path names one.
pub(super) fn container_id(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .find_map(container_id_in_path)
        .map(str::to_owned)
}

/// The innermost component naming a container, so nested containers (Docker in Docker)
/// report the one the process runs in, and runtime subgroups (`…/libpod-<id>.scope/container`)
/// still resolve.
fn container_id_in_path(path: &str) -> Option<&str> {
    path.split('/').rev().find_map(container_id_in_component)
}

/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`
/// (systemd cgroup driver) or a bare 64-hex `<id>` (cgroupfs driver: `/docker/<id>`,
/// `/kubepods/<qos>/pod<uid>/<id>`). Conmon scopes (`crio-conmon-<id>`) are the runtime's
/// monitor, not the container, and do not match.
fn container_id_in_component(component: &str) -> Option<&str> {
    match component.strip_suffix(".scope") {
        Some(scope) => SCOPE_PREFIXES
            .iter()
            .find_map(|prefix| scope.strip_prefix(prefix))
            .filter(|id| id.len() >= MIN_SCOPE_ID_LEN && is_lower_hex(id)),
        None => (component.len() == FULL_ID_LEN && is_lower_hex(component)).then_some(component),
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e9a0c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f";

    #[test]
    fn parses_cgroup_v2_path() {
        let cgroup = "12:memory:/docker/x\n0::/system.slice/nginx.service\n";
        assert_eq!(
            cgroup_v2_path(cgroup).as_deref(),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(cgroup_v2_path("0::/\n").as_deref(), Some("/"));
        assert_eq!(cgroup_v2_path("4:cpu:/\n"), None);
    }

    #[test]
    fn finds_container_ids() {
        let pod = "kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice";
        let cases = [
            format!("0::/system.slice/docker-{ID}.scope"),
            format!("0::/system.slice/docker-{ID}.scope/init.scope"),
            format!("0::/kubepods.slice/kubepods-burstable.slice/{pod}/cri-containerd-{ID}.scope"),
            format!("0::/kubepods.slice/kubepods-besteffort.slice/{pod}/crio-{ID}.scope"),
            format!("0::/machine.slice/libpod-{ID}.scope/container"),
            format!(
                "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
            ),
            format!("0::/docker/{ID}"),
            format!("12:memory:/docker/{ID}\n11:cpu:/docker/{ID}"),
            format!("0::/kubepods/besteffort/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/{ID}"),
        ];
        for cgroup in &cases {
            assert_eq!(container_id(cgroup).as_deref(), Some(ID), "{cgroup}");
        }
    }

    #[test]
    fn short_scope_ids_are_kept_as_found() {
        assert_eq!(
            container_id("0::/system.slice/docker-0123456789ab.scope").as_deref(),
            Some("0123456789ab")
        );
    }

    #[test]
    fn nested_containers_report_the_innermost() {
        let inner = "a".repeat(FULL_ID_LEN);
        let cgroup = format!("0::/system.slice/docker-{ID}.scope/docker/{inner}");
        assert_eq!(container_id(&cgroup), Some(inner));
    }

    #[test]
    fn host_cgroups_have_no_container_id() {
        let short = &ID[..FULL_ID_LEN - 1];
        let cases = [
            "0::/".to_owned(),
            "0::/init.scope".to_owned(),
            "0::/system.slice/docker.service".to_owned(),
            "0::/system.slice/containerd.service".to_owned(),
            "0::/user.slice/user-0.slice/session-3.scope".to_owned(),
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-2841.scope"
                .to_owned(),
            format!("0::/kubepods.slice/kubepods-besteffort.slice/crio-conmon-{ID}.scope"),
            format!("0::/docker/{short}"),
            format!("0::/docker/{}", ID.to_uppercase()),
            String::new(),
        ];
        for cgroup in &cases {
            assert_eq!(container_id(cgroup), None, "{cgroup}");
        }
    }
}
