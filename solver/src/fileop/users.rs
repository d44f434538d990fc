//! `--chown` names resolved against the rootfs being built (its /etc/passwd and /etc/group), as Docker does.

use std::path::Path;

use super::{scoped, FileOpError};
use crate::llb::{Chown, UserRef};

fn lookup(root: &Path, file: &str, name: &str) -> Result<Option<(u32, u32)>, FileOpError> {
    let path = scoped::resolve(root, file, true)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(FileOpError::Io { path, source }),
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&name) && fields.len() >= 3 {
            let id = fields[2].parse().ok();
            let gid = fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(0);
            if let Some(id) = id {
                return Ok(Some((id, gid)));
            }
        }
    }
    Ok(None)
}

/// The numeric owner for a `--chown`: names looked up in the root; a user without a group gets the user's
/// primary group (a numeric user without a group gets the same number as gid).
pub fn resolve_chown(root: &Path, chown: &Chown) -> Result<(u32, u32), FileOpError> {
    let (uid, primary_gid) = match &chown.user {
        UserRef::Id(n) => (*n, *n),
        UserRef::Name(name) => lookup(root, "/etc/passwd", name)?
            .ok_or_else(|| FileOpError::UnknownUser(name.clone()))?,
    };
    let gid = match &chown.group {
        None => primary_gid,
        Some(UserRef::Id(n)) => *n,
        Some(UserRef::Name(name)) => lookup(root, "/etc/group", name)?
            .map(|(gid, _)| gid)
            .ok_or_else(|| FileOpError::UnknownGroup(name.clone()))?,
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
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
        assert!(matches!(
            c(UserRef::Name("nobody".into()), None),
            Err(FileOpError::UnknownUser(_))
        ));
        assert!(matches!(
            c(UserRef::Id(1), Some(UserRef::Name("nope".into()))),
            Err(FileOpError::UnknownGroup(_))
        ));
    }
}
