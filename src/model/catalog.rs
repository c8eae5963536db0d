//! The action vocabulary and the predefined roles. They are data written by
//! a migration and immutable, so they are read once at start-up and every
//! decision is made in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::ActionScope;
use crate::error::{Error, Result, quoted};

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub actions: BTreeSet<String>,
}

/// How an action is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionDef {
    pub scope: ActionScope,
    /// Never allowed to a request authenticated by an API key.
    pub api_key_restricted: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    actions: HashMap<String, ActionDef>,
    roles: BTreeMap<String, Role>,
    /// Each role's actions again, for the one lookup every decision makes.
    grants: HashMap<String, HashSet<String>>,
}

impl Catalog {
    pub fn new(
        actions: impl IntoIterator<Item = (String, ActionDef)>,
        roles: impl IntoIterator<Item = (String, String)>,
        role_actions: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let actions: HashMap<_, _> = actions.into_iter().collect();
        let mut roles: BTreeMap<String, Role> = roles
            .into_iter()
            .map(|(name, description)| {
                let role = Role {
                    name: name.clone(),
                    description,
                    actions: BTreeSet::new(),
                };
                (name, role)
            })
            .collect();
        for (role, action) in role_actions {
            let entry = roles.get_mut(&role).ok_or_else(|| {
                Error::internal(format!("role_actions names unknown role {role}"))
            })?;
            entry.actions.insert(action);
        }
        let grants = roles
            .values()
            .map(|r| (r.name.clone(), r.actions.iter().cloned().collect()))
            .collect();
        let catalog = Self {
            actions,
            roles,
            grants,
        };
        catalog.check_known(super::actions::USED_BY_AUTHZD)?;
        Ok(catalog)
    }

    /// Fails start-up if the code names an action the data does not have.
    fn check_known(&self, names: &[&str]) -> Result<()> {
        match names.iter().find(|name| !self.actions.contains_key(**name)) {
            Some(missing) => Err(Error::internal(format!(
                "action {missing} is missing from the action table"
            ))),
            None => Ok(()),
        }
    }

    pub fn scope(&self, action: &str) -> Option<ActionScope> {
        self.actions.get(action).map(|a| a.scope)
    }

    pub fn is_api_key_restricted(&self, action: &str) -> bool {
        self.actions
            .get(action)
            .is_some_and(|a| a.api_key_restricted)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    pub fn role_grants(&self, role: &str, action: &str) -> bool {
        self.grants
            .get(role)
            .is_some_and(|actions| actions.contains(action))
    }

    /// Validates a role name against the predefined roles.
    pub fn require_role(&self, field: &str, name: &str) -> Result<&Role> {
        if name.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        self.roles.get(name).ok_or_else(|| {
            Error::invalid(field, format!("{name} is not a role", name = quoted(name)))
        })
    }

    /// Validates an action name against the vocabulary.
    pub fn require_action(&self, field: &str, name: &str) -> Result<ActionScope> {
        if name.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        self.scope(name).ok_or_else(|| {
            Error::invalid(
                field,
                format!("{name} is not a known action", name = quoted(name)),
            )
        })
    }
}
