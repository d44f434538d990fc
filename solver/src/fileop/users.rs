//! `--chown` names resolved against the rootfs being built (its /etc/passwd and /etc/group), as Docker does.

use std::path::Path;

use super::{scoped, FileOpError};
use crate::llb::{Chown, UserRef};

/// The lines of `file` in the rootfs, split at `:`; a missing file has none.
fn entries(root: &Path, file: &str) -> Result<Vec<Vec<String>>, FileOpError> {
    let path = scoped::resolve(root, file, true)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        // A path through a file (an /etc that is no directory) is no file either, as BuildKit's readUser takes it.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new())
        }
        Err(source) => return Err(FileOpError::Io { path, source }),
    };
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect())
}

/// The home directory runc gives a process whose environment has no HOME (BuildKit's RUN steps get it that way):
/// the /etc/passwd entry of `uid`, else `/`.
pub fn run_user_home(root: &Path, uid: u32) -> String {
    entries(root, "/etc/passwd")
        .ok()
        .and_then(|p| {
            p.into_iter()
                .find(|f| f.len() >= 6 && f[2].parse::<u32>() == Ok(uid))
                .map(|f| f[5].clone())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// Who a RUN step runs as: uid, gid and supplementary groups, as runc's user lookup (which BuildKit uses)
/// decides them from `USER user[:group]`. A user found in /etc/passwd (by name or uid) brings its primary group
/// and, unless a group is named, every group of /etc/group that lists it; a uid not in /etc/passwd runs with
/// gid 0. The primary group is always the first supplementary group too, as BuildKit and containerd give it since
/// CVE-2023-25173 (BuildKit's testUserAdditionalGids: `USER 1234` runs with `groups=0(root)`).
pub fn resolve_run_user(root: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>), FileOpError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = entries(root, "/etc/passwd")?;
    let numeric = user.parse::<u32>().ok();
    let found = passwd.iter().find(|f| {
        f.len() >= 4
            && match numeric {
                Some(n) => f[2].parse::<u32>() == Ok(n),
                None => f[0] == user,
            }
    });
    let (uid, mut gid, name) = match (found, numeric) {
        (Some(f), _) => (
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            Some(f[0].clone()),
        ),
        (None, Some(n)) => (n, 0, None),
        (None, None) => return Err(FileOpError::UnknownUser(user.to_string())),
    };
    let groups = entries(root, "/etc/group")?;
    let mut supplementary: Vec<u32> = Vec::new();
    match group.filter(|g| !g.is_empty()) {
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => groups
                    .iter()
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| FileOpError::UnknownGroup(g.to_string()))?,
            }
        }
        None => {
            if let Some(name) = &name {
                for f in groups.iter().filter(|f| f.len() >= 4) {
                    if f[3].split(',').any(|m| m == name) {
                        if let Ok(g) = f[2].parse::<u32>() {
                            supplementary.push(g);
                        }
                    }
                }
            }
        }
    }
    supplementary.retain(|g| *g != gid);
    supplementary.insert(0, gid);
    Ok((uid, gid, supplementary))
}

fn lookup(root: &Path, file: &str, name: &str) -> Result<Option<(u32, u32)>, FileOpError> {
    for fields in entries(root, file)? {
        if fields.first().map(String::as_str) == Some(name) && fields.len() >= 3 {
            let id = fields[2].parse().ok();
            let gid = fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(0);
            if let Some(id) = id {
                return Ok(Some((id, gid)));
            }
        }
    }
    Ok(None)
}

/// The numeric owner for a `--chown` (and for what WORKDIR makes under USER), as BuildKit's `readUser` decides it:
/// a numeric user is that uid with the same number as gid; a name found in /etc/passwd brings its uid and primary
/// group; a name not found, or no /etc/passwd at all, is 0:0 with no error. A group, when given, replaces the gid:
/// a number as it is, a name found in /etc/group by its gid, a name not found leaves the gid the user part gave.
pub fn resolve_chown(root: &Path, chown: &Chown) -> Result<(u32, u32), FileOpError> {
    let (uid, primary_gid) = match &chown.user {
        UserRef::Id(n) => (*n, *n),
        UserRef::Name(name) => lookup(root, "/etc/passwd", name)?.unwrap_or((0, 0)),
    };
    let gid = match &chown.group {
        None => primary_gid,
        Some(UserRef::Id(n)) => *n,
        Some(UserRef::Name(name)) => lookup(root, "/etc/group", name)?
            .map(|(gid, _)| gid)
            .unwrap_or(primary_gid),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rootfs with a `root` and an `app` user, and `group` as its /etc/group.
    fn rootfs(group: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), group).unwrap();
        d
    }

    #[test]
    fn run_users_as_runc_resolves_them() {
        let d =
            rootfs("root:x:0:\napp:x:1001:\nwheel:x:10:root,app\naudio:x:29:app\nstaff:x:50:\n");
        let r = |s: &str| resolve_run_user(d.path(), s);
        // The primary group leads the supplementary ones (BuildKit's testUserAdditionalGids).
        assert_eq!(r("app").unwrap(), (1000, 1001, vec![1001, 10, 29]));
        assert_eq!(
            r("1000").unwrap(),
            (1000, 1001, vec![1001, 10, 29]),
            "by uid"
        );
        assert_eq!(
            r("app:staff").unwrap(),
            (1000, 50, vec![50]),
            "a named group replaces them"
        );
        assert_eq!(r("app:7").unwrap(), (1000, 7, vec![7]));
        assert_eq!(r("4242").unwrap(), (4242, 0, vec![0]), "unknown uid: gid 0");
        assert_eq!(r("root").unwrap(), (0, 0, vec![0, 10]));
        assert_eq!(
            r("0").unwrap(),
            (0, 0, vec![0, 10]),
            "what a step without USER runs as"
        );
        assert!(matches!(r("nobody"), Err(FileOpError::UnknownUser(_))));
        assert!(matches!(r("app:nope"), Err(FileOpError::UnknownGroup(_))));
    }

    #[test]
    fn home_is_the_users_passwd_entry_or_the_root_directory() {
        let d = rootfs("root:x:0:\n");
        assert_eq!(run_user_home(d.path(), 0), "/root");
        assert_eq!(run_user_home(d.path(), 1000), "/home/app");
        assert_eq!(run_user_home(d.path(), 4242), "/", "unknown uid");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(run_user_home(empty.path(), 0), "/", "no /etc/passwd");
    }

    #[test]
    fn names_and_ids() {
        let d = rootfs("root:x:0:\nstaff:x:50:\n");
        let c =
            |u: UserRef, g: Option<UserRef>| resolve_chown(d.path(), &Chown { user: u, group: g });
        assert_eq!(c(UserRef::Name("app".into()), None).unwrap(), (1000, 1001));
        assert_eq!(
            c(
                UserRef::Name("app".into()),
                Some(UserRef::Name("staff".into()))
            )
            .unwrap(),
            (1000, 50)
        );
        assert_eq!(c(UserRef::Id(7), None).unwrap(), (7, 7));
        assert_eq!(c(UserRef::Id(7), Some(UserRef::Id(8))).unwrap(), (7, 8));
        // BuildKit's readUser: a user not found is 0:0, a group not found keeps the user part's gid.
        assert_eq!(c(UserRef::Name("nobody".into()), None).unwrap(), (0, 0));
        assert_eq!(
            c(
                UserRef::Name("nobody".into()),
                Some(UserRef::Name("staff".into()))
            )
            .unwrap(),
            (0, 50)
        );
        assert_eq!(
            c(UserRef::Id(1), Some(UserRef::Name("nope".into()))).unwrap(),
            (1, 1)
        );
        assert_eq!(
            c(
                UserRef::Name("app".into()),
                Some(UserRef::Name("nope".into()))
            )
            .unwrap(),
            (1000, 1001)
        );
        // No /etc/passwd or /etc/group at all: the same, with no error.
        let empty = tempfile::tempdir().unwrap();
        let user = Chown {
            user: UserRef::Name("app".into()),
            group: Some(UserRef::Name("staff".into())),
        };
        assert_eq!(resolve_chown(empty.path(), &user).unwrap(), (0, 0));
    }
}
