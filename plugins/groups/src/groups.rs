//! The group registry: every group, its key and members, and the groups of
//! each connection.

use std::collections::HashMap;
use std::fmt;

use bevy_ecs::prelude::*;
use portcullis_session::Account;

use crate::error::GroupError;

/// One member of a group: a logged-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The connection entity of the member's session.
    pub entity: Entity,
    /// The member's account (its `name` is what `group_join` lists and what
    /// `group_message.from` says).
    pub account: Account,
}

/// A session group: a key and the members, in the order they joined (the
/// creator first). Never empty: a group whose last member goes is removed.
#[derive(Clone)]
pub struct Group {
    key: String,
    members: Vec<Member>,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is a secret shared by the members: never in logs.
        f.debug_struct("Group").field("members", &self.members).finish_non_exhaustive()
    }
}

impl Group {
    /// The members, in join order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The connection entities of the members, in join order (for
    /// [`Rpc::notify_many`](portcullis_rpc::Rpc::notify_many)).
    pub fn entities(&self) -> impl Iterator<Item = Entity> + '_ {
        self.members.iter().map(|m| m.entity)
    }

    /// The account names of the members, in join order.
    pub fn account_names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.account.name.clone()).collect()
    }

    /// Whether the session on `entity` is a member.
    pub fn contains(&self, entity: Entity) -> bool {
        self.members.iter().any(|m| m.entity == entity)
    }

    /// Number of members (at least 1).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always `false`: empty groups are removed at once. Present for symmetry with [`Group::len`].
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether `key` is this group's key. Compares every byte whatever the
    /// first difference, so timing says nothing about how much matched.
    pub fn key_matches(&self, key: &str) -> bool {
        let (a, b) = (self.key.as_bytes(), key.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Every session group by id, and the group ids of each member's connection
/// entity.
///
/// Inserted as a resource by [`GroupsPlugin`](crate::GroupsPlugin); changed
/// only by the group methods (`group_create`, `group_join`, `group_leave`)
/// and by the plugin's observers of `LoggedOut` and `ConnectionClosed`, which
/// drop a session from all its groups. Read-only for everyone else, e.g. a
/// game system that notifies a group:
///
/// # Examples
///
/// ```
/// use bevy_ecs::prelude::*;
/// use portcullis_groups::Groups;
/// use portcullis_rpc::Rpc;
///
/// /// Tells every member of the group "lobby" that a match starts.
/// fn announce_match(groups: Res<Groups>, rpc: Rpc) {
///     if let Some(lobby) = groups.get("lobby") {
///         rpc.notify_many(lobby.entities(), "match_starting", &serde_json::json!({"in_s": 10}));
///     }
/// }
/// # bevy_app::App::new().add_systems(bevy_app::Update, announce_match);
/// ```
#[derive(Resource, Default, Debug)]
pub struct Groups {
    groups: HashMap<String, Group>,
    by_entity: HashMap<Entity, Vec<String>>,
}

impl Groups {
    /// The group with this id (ids are case-sensitive).
    pub fn get(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    /// Whether a group with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.groups.contains_key(id)
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there is no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The ids of every group, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.groups.keys().map(String::as_str)
    }

    /// The ids of the groups the session on `entity` is a member of, in the
    /// order it joined them.
    pub fn groups_of(&self, entity: Entity) -> impl Iterator<Item = &str> + '_ {
        self.by_entity.get(&entity).into_iter().flatten().map(String::as_str)
    }

    /// Number of groups the session on `entity` is a member of.
    pub fn membership_count(&self, entity: Entity) -> usize {
        self.by_entity.get(&entity).map_or(0, Vec::len)
    }

    /// Creates group `id` with `key` and `creator` as its only member. The
    /// caller checked the limits.
    pub(crate) fn create(&mut self, id: String, key: String, creator: Member) -> Result<(), GroupError> {
        if self.groups.contains_key(&id) {
            return Err(GroupError::Exists);
        }
        self.by_entity.entry(creator.entity).or_default().push(id.clone());
        self.groups.insert(id, Group { key, members: vec![creator] });
        Ok(())
    }

    /// Adds `member` to group `id` (nothing happens when it already is one).
    /// The caller checked the key and the limits.
    pub(crate) fn add_member(&mut self, id: &str, member: Member) -> Result<(), GroupError> {
        let group = self.groups.get_mut(id).ok_or(GroupError::NotFound)?;
        if group.contains(member.entity) {
            return Ok(());
        }
        self.by_entity.entry(member.entity).or_default().push(id.to_owned());
        group.members.push(member);
        Ok(())
    }

    /// Removes the session on `entity` from group `id`; the group goes when
    /// it was the last member. Returns whether the group was removed.
    pub(crate) fn remove_member(&mut self, id: &str, entity: Entity) -> Result<bool, GroupError> {
        let group = self.groups.get_mut(id).ok_or(GroupError::NotFound)?;
        let pos = group.members.iter().position(|m| m.entity == entity).ok_or(GroupError::NotAMember)?;
        group.members.remove(pos);
        let emptied = group.members.is_empty();
        if emptied {
            self.groups.remove(id);
        }
        if let Some(ids) = self.by_entity.get_mut(&entity) {
            ids.retain(|g| g != id);
            if ids.is_empty() {
                self.by_entity.remove(&entity);
            }
        }
        Ok(emptied)
    }

    /// Removes the session on `entity` from every group it is in; returns
    /// the ids of those groups. Empty groups are removed.
    pub(crate) fn remove_everywhere(&mut self, entity: Entity) -> Vec<String> {
        let ids = self.by_entity.remove(&entity).unwrap_or_default();
        for id in &ids {
            if let Some(group) = self.groups.get_mut(id) {
                group.members.retain(|m| m.entity != entity);
                if group.members.is_empty() {
                    self.groups.remove(id);
                }
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(world: &mut World, id: i64) -> Member {
        Member { entity: world.spawn_empty().id(), account: Account { id, name: format!("player{id}") } }
    }

    #[test]
    fn last_member_out_removes_the_group() {
        let mut world = World::new();
        let (a, b) = (member(&mut world, 1), member(&mut world, 2));
        let mut groups = Groups::default();
        groups.create("g".into(), "k".into(), a.clone()).expect("created");
        assert_eq!(groups.create("g".into(), "x".into(), b.clone()), Err(GroupError::Exists));
        groups.add_member("g", b.clone()).expect("joined");
        groups.add_member("g", b.clone()).expect("joining twice is a no-op");
        assert_eq!(groups.get("g").map(Group::len), Some(2));
        assert_eq!(groups.remove_member("g", a.entity), Ok(false));
        assert_eq!(groups.remove_member("g", a.entity), Err(GroupError::NotAMember));
        assert_eq!(groups.remove_everywhere(b.entity), vec!["g".to_owned()]);
        assert!(groups.is_empty());
        assert_eq!(groups.membership_count(b.entity), 0);
    }

    #[test]
    fn keys_compare_exactly() {
        let group = Group { key: "secret".into(), members: Vec::new() };
        assert!(group.key_matches("secret"));
        assert!(!group.key_matches("Secret"));
        assert!(!group.key_matches("secre"));
        assert!(!group.key_matches(""));
    }
}
