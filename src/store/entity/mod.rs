//! SeaORM entities: the tables as the current migrations leave them.

pub mod accounts;
pub mod actions;
pub mod api_keys;
pub mod group_grants;
pub mod group_members;
pub mod identity_providers;
pub mod idp_group_mappings;
pub mod role_actions;
pub mod role_bindings;
pub mod roles;
pub mod user_groups;
pub mod users;
