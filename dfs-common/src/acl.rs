//! POSIX.1e access control lists as Linux keeps them: the xattr form of
//! `system.posix_acl_access` / `system.posix_acl_default` (a `posix_acl_xattr_header` of
//! version 2, then entries of (tag u16, perm u16, id u32), little-endian), the rules that
//! make one valid (`posix_acl_valid`), the access check (`posix_acl_permission`), what a
//! chmod does to one (`posix_acl_chmod`), what a new inode gets from its directory's
//! default ACL (`posix_acl_create`), and when an ACL says no more than mode bits.
//!
//! Owns: those pure rules. Must not do I/O, know where ACLs are stored, or know callers
//! beyond a uid and a group-membership test.

use crate::FsError;

/// `posix_acl_xattr_header.a_version`.
pub const XATTR_VERSION: u32 = 2;
/// Tags of the xattr form.
pub const TAG_USER_OBJ: u16 = 0x01;
pub const TAG_USER: u16 = 0x02;
pub const TAG_GROUP_OBJ: u16 = 0x04;
pub const TAG_GROUP: u16 = 0x08;
pub const TAG_MASK: u16 = 0x10;
pub const TAG_OTHER: u16 = 0x20;
/// The id written for entries that name no one (`ACL_UNDEFINED_ID`).
pub const UNDEFINED_ID: u32 = u32::MAX;

/// Permission bits of an entry (and of `want` in `Acl::permits`).
pub const READ: u32 = 4;
pub const WRITE: u32 = 2;
pub const EXECUTE: u32 = 1;
const RWX: u32 = 7;

const HEADER_LEN: usize = 4;
const ENTRY_LEN: usize = 8;

/// Whom an entry is about. The derived order is the kernel's canonical entry order
/// (owner, named users by uid, owning group, named groups by gid, mask, others).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tag {
    UserObj,
    User(u32),
    GroupObj,
    Group(u32),
    Mask,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub tag: Tag,
    /// A set of `READ`, `WRITE`, `EXECUTE`.
    pub perm: u32,
}

/// A valid ACL (see `from_xattr`), its entries in canonical order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

fn invalid(why: &str) -> FsError {
    FsError::Invalid(format!("access control list: {why}"))
}

impl Acl {
    /// Parses the xattr form. `Ok(None)` for a header with no entries, which Linux takes
    /// as "no ACL" (setting it removes the ACL). A header of another version is
    /// `NotSupported` (the kernel's EOPNOTSUPP); anything else malformed, or an ACL that
    /// `posix_acl_valid` refuses, or one naming a user or group twice, is `Invalid`.
    pub fn from_xattr(bytes: &[u8]) -> Result<Option<Acl>, FsError> {
        if bytes.len() < HEADER_LEN {
            return Err(invalid("shorter than its header"));
        }
        let version = u32::from_le_bytes(bytes[..HEADER_LEN].try_into().expect("4 bytes"));
        if version != XATTR_VERSION {
            return Err(FsError::NotSupported(format!(
                "access control list of version {version} (only {XATTR_VERSION} is known)"
            )));
        }
        let body = &bytes[HEADER_LEN..];
        if !body.len().is_multiple_of(ENTRY_LEN) {
            return Err(invalid("length is not a whole number of entries"));
        }
        if body.is_empty() {
            return Ok(None);
        }
        let mut entries = Vec::with_capacity(body.len() / ENTRY_LEN);
        for e in body.chunks_exact(ENTRY_LEN) {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            let perm = u32::from(u16::from_le_bytes([e[2], e[3]]));
            let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            if perm & !RWX != 0 {
                return Err(invalid("permission bits other than rwx"));
            }
            let tag = match tag {
                TAG_USER_OBJ => Tag::UserObj,
                TAG_USER => Tag::User(id),
                TAG_GROUP_OBJ => Tag::GroupObj,
                TAG_GROUP => Tag::Group(id),
                TAG_MASK => Tag::Mask,
                TAG_OTHER => Tag::Other,
                t => return Err(invalid(&format!("unknown tag {t:#x}"))),
            };
            entries.push(Entry { tag, perm });
        }
        Acl::new(entries).map(Some)
    }

    /// An ACL of `entries` (in any order), checked like `posix_acl_valid`: exactly one
    /// owner, owning group and other entry; a mask (at most one) whenever a named user or
    /// group is present; no user or group named twice.
    pub fn new(mut entries: Vec<Entry>) -> Result<Acl, FsError> {
        // Kernel order within the kinds of entry; ids need not be sorted on the way in.
        let rank = |t: Tag| match t {
            Tag::UserObj => 0,
            Tag::User(_) => 1,
            Tag::GroupObj => 2,
            Tag::Group(_) => 3,
            Tag::Mask => 4,
            Tag::Other => 5,
        };
        if entries.windows(2).any(|w| rank(w[0].tag) > rank(w[1].tag)) {
            return Err(invalid("entries out of order"));
        }
        if entries.iter().any(|e| e.perm & !RWX != 0) {
            return Err(invalid("permission bits other than rwx"));
        }
        entries.sort_by_key(|e| e.tag);
        if entries.windows(2).any(|w| w[0].tag == w[1].tag) {
            return Err(invalid("an entry is given twice"));
        }
        let count = |f: fn(&Tag) -> bool| entries.iter().filter(|e| f(&e.tag)).count();
        if count(|t| *t == Tag::UserObj) != 1
            || count(|t| *t == Tag::GroupObj) != 1
            || count(|t| *t == Tag::Other) != 1
        {
            return Err(invalid("needs exactly one owner, group and other entry"));
        }
        let named = count(|t| matches!(t, Tag::User(_) | Tag::Group(_)));
        if named > 0 && count(|t| *t == Tag::Mask) == 0 {
            return Err(invalid("named users or groups need a mask entry"));
        }
        Ok(Acl { entries })
    }

    /// The three-entry ACL that says exactly what permission bits `mode` say.
    pub fn from_mode(mode: u32) -> Acl {
        Acl {
            entries: vec![
                Entry {
                    tag: Tag::UserObj,
                    perm: (mode >> 6) & RWX,
                },
                Entry {
                    tag: Tag::GroupObj,
                    perm: (mode >> 3) & RWX,
                },
                Entry {
                    tag: Tag::Other,
                    perm: mode & RWX,
                },
            ],
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The xattr form, entries in canonical order.
    pub fn to_xattr(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * self.entries.len());
        out.extend_from_slice(&XATTR_VERSION.to_le_bytes());
        for e in &self.entries {
            let (tag, id) = match e.tag {
                Tag::UserObj => (TAG_USER_OBJ, UNDEFINED_ID),
                Tag::User(uid) => (TAG_USER, uid),
                Tag::GroupObj => (TAG_GROUP_OBJ, UNDEFINED_ID),
                Tag::Group(gid) => (TAG_GROUP, gid),
                Tag::Mask => (TAG_MASK, UNDEFINED_ID),
                Tag::Other => (TAG_OTHER, UNDEFINED_ID),
            };
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&(e.perm as u16).to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    fn perm_of(&self, tag: Tag) -> Option<u32> {
        self.entries.iter().find(|e| e.tag == tag).map(|e| e.perm)
    }

    fn set_perm(&mut self, tag: Tag, perm: u32) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.tag == tag) {
            e.perm = perm & RWX;
        }
    }

    /// The entry that stands for the group class in the mode bits: the mask if there is
    /// one, else the owning group.
    fn group_class(&self) -> Tag {
        if self.perm_of(Tag::Mask).is_some() {
            Tag::Mask
        } else {
            Tag::GroupObj
        }
    }

    /// The permission bits (0o777) this ACL shows as mode bits: owner, mask or owning
    /// group, other (`posix_acl_equiv_mode`).
    pub fn permission_bits(&self) -> u32 {
        let bits = |t| self.perm_of(t).unwrap_or(0);
        (bits(Tag::UserObj) << 6) | (bits(self.group_class()) << 3) | bits(Tag::Other)
    }

    /// Whether the ACL says no more than its permission bits (only the three required
    /// entries), so that storing it would add nothing.
    pub fn is_equivalent_to_mode(&self) -> bool {
        self.entries.len() == 3
    }

    /// A chmod to `mode` (`posix_acl_chmod`): owner, mask-or-owning-group and other
    /// entries take the new bits; named entries keep theirs.
    pub fn chmod(&mut self, mode: u32) {
        self.set_perm(Tag::UserObj, mode >> 6);
        self.set_perm(self.group_class(), mode >> 3);
        self.set_perm(Tag::Other, mode);
    }

    /// What an inode created with mode argument `mode` (0o7777) gets from this default
    /// ACL of its directory (`posix_acl_create`, the umask ignored): its access ACL (this
    /// one with the owner, mask-or-owning-group and other entries ANDed with the mode's
    /// bits) and its mode (the mode's bits ANDed with those entries; set-id and sticky
    /// bits kept).
    pub fn create_masked(&self, mode: u32) -> (Acl, u32) {
        let mut acl = self.clone();
        let class = acl.group_class();
        let mut bits = mode & 0o777;
        for (tag, shift) in [(Tag::UserObj, 6), (class, 3), (Tag::Other, 0)] {
            let perm = acl.perm_of(tag).unwrap_or(0) & (mode >> shift) & RWX;
            acl.set_perm(tag, perm);
            bits = (bits & !(RWX << shift)) | (perm << shift);
        }
        (acl, (mode & 0o7000) | bits)
    }

    /// Whether a caller (`uid`, a member of the groups `in_group` says yes to) has all of
    /// `want` on an inode owned by `owner`:`group` with this access ACL
    /// (`posix_acl_permission`): the owner entry for the owner; else a named user entry,
    /// limited by the mask; else the owning and named group entries the caller is in, any
    /// of which grants all of `want` (limited by the mask), and if the caller is in one of
    /// them but none grants it, nothing; else the other entry.
    pub fn permits(
        &self,
        uid: u32,
        in_group: impl Fn(u32) -> bool,
        owner: u32,
        group: u32,
        want: u32,
    ) -> bool {
        let want = want & RWX;
        let mask = self.perm_of(Tag::Mask).unwrap_or(RWX);
        let has = |perm: u32| perm & want == want;
        if uid == owner {
            return has(self.perm_of(Tag::UserObj).unwrap_or(0));
        }
        if let Some(perm) = self.perm_of(Tag::User(uid)) {
            return has(perm & mask);
        }
        let mut in_a_group = false;
        for e in &self.entries {
            let member = match e.tag {
                Tag::GroupObj => in_group(group),
                Tag::Group(gid) => in_group(gid),
                _ => false,
            };
            if member {
                in_a_group = true;
                if has(e.perm) {
                    return has(e.perm & mask);
                }
            }
        }
        !in_a_group && has(self.perm_of(Tag::Other).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(tag: Tag, perm: u32) -> Entry {
        Entry { tag, perm }
    }

    fn xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut out = XATTR_VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&perm.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    const U: u32 = UNDEFINED_ID;

    /// user::rw-, user:1001:r-x, group::r--, group:50:rw-, mask::r-x, other::---
    fn named() -> Acl {
        Acl::new(vec![
            e(Tag::UserObj, 6),
            e(Tag::User(1001), 5),
            e(Tag::GroupObj, 4),
            e(Tag::Group(50), 6),
            e(Tag::Mask, 5),
            e(Tag::Other, 0),
        ])
        .unwrap()
    }

    #[test]
    fn the_kernels_form_round_trips_in_canonical_order() {
        let bytes = xattr(&[
            (TAG_USER_OBJ, 6, U),
            (TAG_USER, 7, 1002),
            (TAG_USER, 5, 1001),
            (TAG_GROUP_OBJ, 4, U),
            (TAG_MASK, 7, U),
            (TAG_OTHER, 0, U),
        ]);
        let acl = Acl::from_xattr(&bytes).unwrap().unwrap();
        let tags: Vec<Tag> = acl.entries().iter().map(|e| e.tag).collect();
        assert_eq!(
            tags,
            [
                Tag::UserObj,
                Tag::User(1001),
                Tag::User(1002),
                Tag::GroupObj,
                Tag::Mask,
                Tag::Other
            ]
        );
        let again = acl.to_xattr();
        assert_eq!(again.len(), bytes.len());
        assert_eq!(&again[..4], &[2, 0, 0, 0]);
        // user:1001 now comes first, with its id little-endian.
        assert_eq!(&again[12..20], &[2, 0, 5, 0, 0xe9, 3, 0, 0]);
        assert_eq!(Acl::from_xattr(&again).unwrap().unwrap(), acl);
    }

    #[test]
    fn a_header_without_entries_is_no_acl_and_other_versions_are_not_supported() {
        assert_eq!(Acl::from_xattr(&xattr(&[])).unwrap(), None);
        let mut v1 = xattr(&[
            (TAG_USER_OBJ, 6, U),
            (TAG_GROUP_OBJ, 4, U),
            (TAG_OTHER, 4, U),
        ]);
        v1[0] = 1;
        assert!(matches!(
            Acl::from_xattr(&v1),
            Err(FsError::NotSupported(_))
        ));
    }

    #[test]
    fn malformed_or_invalid_acls_are_invalid() {
        let min = [
            (TAG_USER_OBJ, 6, U),
            (TAG_GROUP_OBJ, 4, U),
            (TAG_OTHER, 4, U),
        ];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("short header", vec![2, 0]),
            ("partial entry", {
                let mut b = xattr(&min);
                b.pop();
                b
            }),
            (
                "no owner",
                xattr(&[(TAG_GROUP_OBJ, 4, U), (TAG_OTHER, 4, U)]),
            ),
            (
                "no group",
                xattr(&[(TAG_USER_OBJ, 6, U), (TAG_OTHER, 4, U)]),
            ),
            (
                "no other",
                xattr(&[(TAG_USER_OBJ, 6, U), (TAG_GROUP_OBJ, 4, U)]),
            ),
            (
                "two owners",
                xattr(&[
                    (TAG_USER_OBJ, 6, U),
                    (TAG_USER_OBJ, 6, U),
                    (TAG_GROUP_OBJ, 4, U),
                    (TAG_OTHER, 4, U),
                ]),
            ),
            (
                "named user without mask",
                xattr(&[
                    (TAG_USER_OBJ, 6, U),
                    (TAG_USER, 6, 7),
                    (TAG_GROUP_OBJ, 4, U),
                    (TAG_OTHER, 4, U),
                ]),
            ),
            (
                "named group without mask",
                xattr(&[
                    (TAG_USER_OBJ, 6, U),
                    (TAG_GROUP_OBJ, 4, U),
                    (TAG_GROUP, 6, 7),
                    (TAG_OTHER, 4, U),
                ]),
            ),
            (
                "duplicate user id",
                xattr(&[
                    (TAG_USER_OBJ, 6, U),
                    (TAG_USER, 6, 7),
                    (TAG_USER, 4, 7),
                    (TAG_GROUP_OBJ, 4, U),
                    (TAG_MASK, 7, U),
                    (TAG_OTHER, 4, U),
                ]),
            ),
            (
                "duplicate group id",
                xattr(&[
                    (TAG_USER_OBJ, 6, U),
                    (TAG_GROUP_OBJ, 4, U),
                    (TAG_GROUP, 6, 9),
                    (TAG_GROUP, 4, 9),
                    (TAG_MASK, 7, U),
                    (TAG_OTHER, 4, U),
                ]),
            ),
            (
                "two masks",
                xattr(&[
                    (TAG_USER_OBJ, 6, U),
                    (TAG_GROUP_OBJ, 4, U),
                    (TAG_MASK, 7, U),
                    (TAG_MASK, 7, U),
                    (TAG_OTHER, 4, U),
                ]),
            ),
            (
                "out of order",
                xattr(&[
                    (TAG_GROUP_OBJ, 4, U),
                    (TAG_USER_OBJ, 6, U),
                    (TAG_OTHER, 4, U),
                ]),
            ),
            (
                "bits past rwx",
                xattr(&[
                    (TAG_USER_OBJ, 0o10, U),
                    (TAG_GROUP_OBJ, 4, U),
                    (TAG_OTHER, 4, U),
                ]),
            ),
            (
                "unknown tag",
                xattr(&[
                    (TAG_USER_OBJ, 6, U),
                    (0x40, 4, U),
                    (TAG_GROUP_OBJ, 4, U),
                    (TAG_OTHER, 4, U),
                ]),
            ),
        ];
        for (what, bytes) in cases {
            assert!(
                matches!(Acl::from_xattr(&bytes), Err(FsError::Invalid(_))),
                "{what}: {:?}",
                Acl::from_xattr(&bytes)
            );
        }
        // A mask without named entries is valid (and says more than mode bits do).
        let masked = xattr(&[
            (TAG_USER_OBJ, 6, U),
            (TAG_GROUP_OBJ, 6, U),
            (TAG_MASK, 4, U),
            (TAG_OTHER, 4, U),
        ]);
        let acl = Acl::from_xattr(&masked).unwrap().unwrap();
        assert!(!acl.is_equivalent_to_mode());
        assert_eq!(acl.permission_bits(), 0o644);
    }

    #[test]
    fn mode_bits_come_from_owner_mask_or_group_and_other() {
        let plain = Acl::from_mode(0o751);
        assert!(plain.is_equivalent_to_mode());
        assert_eq!(plain.permission_bits(), 0o751);
        assert!(!named().is_equivalent_to_mode());
        assert_eq!(named().permission_bits(), 0o650);
    }

    #[test]
    fn chmod_sets_owner_mask_and_other_and_keeps_named_entries() {
        let mut acl = named();
        acl.chmod(0o4701);
        assert_eq!(acl.permission_bits(), 0o701);
        assert_eq!(acl.perm_of(Tag::GroupObj), Some(4), "owning group kept");
        assert_eq!(acl.perm_of(Tag::User(1001)), Some(5));
        assert_eq!(acl.perm_of(Tag::Group(50)), Some(6));
        let mut plain = Acl::from_mode(0o644);
        plain.chmod(0o750);
        assert_eq!(plain, Acl::from_mode(0o750));
    }

    #[test]
    fn create_masks_the_default_acl_with_the_mode_argument() {
        // A default of user::rwx, user:1001:rwx, group::r-x, mask::rwx, other::r-x, and
        // open(O_CREAT, 0644): the mask takes the group bits r--, so user:1001 is
        // effectively r-- too; the mode is 0644.
        let default = Acl::new(vec![
            e(Tag::UserObj, 7),
            e(Tag::User(1001), 7),
            e(Tag::GroupObj, 5),
            e(Tag::Mask, 7),
            e(Tag::Other, 5),
        ])
        .unwrap();
        let (access, mode) = default.create_masked(0o644);
        assert_eq!(mode, 0o644);
        assert_eq!(access.perm_of(Tag::UserObj), Some(6));
        assert_eq!(access.perm_of(Tag::User(1001)), Some(7));
        assert_eq!(access.perm_of(Tag::GroupObj), Some(5));
        assert_eq!(access.perm_of(Tag::Mask), Some(4));
        assert_eq!(access.perm_of(Tag::Other), Some(4));
        assert!(!access.is_equivalent_to_mode());
        // A mkdir 0777 under a default of plain bits 750 gets 750; set-id bits pass.
        let (access, mode) = Acl::from_mode(0o750).create_masked(0o2777);
        assert_eq!(mode, 0o2750);
        assert!(access.is_equivalent_to_mode());
        assert_eq!(access.permission_bits(), 0o750);
    }

    #[test]
    fn the_check_goes_owner_then_named_user_then_groups_then_other() {
        let acl = named();
        let (owner, group) = (1000, 100);
        let groups = |mine: &'static [u32]| move |g: u32| mine.contains(&g);
        // The owner gets the owner entry, whatever the groups say.
        assert!(acl.permits(owner, groups(&[50]), owner, group, READ | WRITE));
        assert!(!acl.permits(owner, groups(&[50]), owner, group, EXECUTE));
        // user:1001:r-x, masked by r-x.
        assert!(acl.permits(1001, groups(&[]), owner, group, READ | EXECUTE));
        assert!(!acl.permits(1001, groups(&[50]), owner, group, WRITE));
        // group:50:rw- is limited by mask::r-x: read yes, write no.
        assert!(acl.permits(2000, groups(&[50]), owner, group, READ));
        assert!(!acl.permits(2000, groups(&[50]), owner, group, WRITE));
        // A member of a group entry that grants nothing gets nothing, not other's bits.
        let acl2 = Acl::new(vec![
            e(Tag::UserObj, 7),
            e(Tag::GroupObj, 0),
            e(Tag::Mask, 7),
            e(Tag::Other, 4),
        ])
        .unwrap();
        assert!(!acl2.permits(2000, groups(&[100]), owner, group, READ));
        assert!(acl2.permits(2000, groups(&[]), owner, group, READ));
        // Any of the caller's groups that grants all of want will do.
        let acl3 = Acl::new(vec![
            e(Tag::UserObj, 7),
            e(Tag::GroupObj, 4),
            e(Tag::Group(60), 2),
            e(Tag::Mask, 7),
            e(Tag::Other, 0),
        ])
        .unwrap();
        assert!(acl3.permits(2000, groups(&[100, 60]), owner, group, WRITE));
        assert!(!acl3.permits(2000, groups(&[100, 60]), owner, group, READ | WRITE));
        // Others: other::---.
        assert!(!acl.permits(2000, groups(&[]), owner, group, READ));
    }
}
