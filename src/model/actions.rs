//! The action each admin RPC requires, named once.

pub const LIST_ACCOUNTS: &str = "listAccounts";
pub const CREATE_ACCOUNT: &str = "createAccount";
pub const GET_ACCOUNT: &str = "getAccount";
pub const UPDATE_ACCOUNT: &str = "updateAccount";
pub const DELETE_ACCOUNT: &str = "deleteAccount";
pub const LIST_ALL_USERS: &str = "listAllUsers";
pub const LIST_USERS: &str = "listUsers";
pub const CREATE_USER: &str = "createUser";
pub const GET_USER: &str = "getUser";
pub const UPDATE_USER: &str = "updateUser";
pub const DELETE_USER: &str = "deleteUser";
pub const LIST_ROLES: &str = "listRoles";
pub const GET_ROLE: &str = "getRole";
pub const LIST_ROLE_MEMBERS: &str = "listRoleMembers";
pub const CREATE_ROLE_MEMBER: &str = "createRoleMember";
pub const DELETE_ROLE_MEMBER: &str = "deleteRoleMember";
pub const LIST_USER_GROUPS: &str = "listUserGroups";
pub const CREATE_USER_GROUP: &str = "createUserGroup";
pub const GET_USER_GROUP: &str = "getUserGroup";
pub const UPDATE_USER_GROUP: &str = "updateUserGroup";
pub const DELETE_USER_GROUP: &str = "deleteUserGroup";
pub const ADD_USER_GROUP_USER: &str = "addUserGroupUser";
pub const DELETE_USER_GROUP_USER: &str = "deleteUserGroupUser";
pub const ADD_USER_GROUP_ROLE: &str = "addUserGroupRole";
pub const DELETE_USER_GROUP_ROLE: &str = "deleteUserGroupRole";

pub const CREATE_API_KEY: &str = "createApiKey";
pub const LIST_API_KEYS: &str = "listApiKeys";
pub const GET_API_KEY: &str = "getApiKey";
pub const UPDATE_API_KEY: &str = "updateApiKey";
pub const DELETE_API_KEY: &str = "deleteApiKey";
pub const SELF_CREATE_API_KEY: &str = "selfCreateApiKey";
pub const SELF_LIST_API_KEYS: &str = "selfListApiKeys";
pub const SELF_GET_API_KEY: &str = "selfGetApiKey";
pub const SELF_UPDATE_API_KEY: &str = "selfUpdateApiKey";
pub const SELF_DELETE_API_KEY: &str = "selfDeleteApiKey";

pub const LIST_AUDIT_EVENTS: &str = "listAuditEvents";

pub const USED_BY_AUTHZD: &[&str] = &[
    LIST_AUDIT_EVENTS,
    CREATE_API_KEY,
    LIST_API_KEYS,
    GET_API_KEY,
    UPDATE_API_KEY,
    DELETE_API_KEY,
    SELF_CREATE_API_KEY,
    SELF_LIST_API_KEYS,
    SELF_GET_API_KEY,
    SELF_UPDATE_API_KEY,
    SELF_DELETE_API_KEY,
    LIST_ACCOUNTS,
    CREATE_ACCOUNT,
    GET_ACCOUNT,
    UPDATE_ACCOUNT,
    DELETE_ACCOUNT,
    LIST_ALL_USERS,
    LIST_USERS,
    CREATE_USER,
    GET_USER,
    UPDATE_USER,
    DELETE_USER,
    LIST_ROLES,
    GET_ROLE,
    LIST_ROLE_MEMBERS,
    CREATE_ROLE_MEMBER,
    DELETE_ROLE_MEMBER,
    LIST_USER_GROUPS,
    CREATE_USER_GROUP,
    GET_USER_GROUP,
    UPDATE_USER_GROUP,
    DELETE_USER_GROUP,
    ADD_USER_GROUP_USER,
    DELETE_USER_GROUP_USER,
    ADD_USER_GROUP_ROLE,
    DELETE_USER_GROUP_ROLE,
];

/// Actions that change a user's password, state, keys or existence: on
/// another user they also need the tenant-isolation rule
/// (`Core::require_over_user`), whichever front door asks.
pub fn manages_user(action: &str) -> bool {
    matches!(
        action,
        UPDATE_USER | DELETE_USER | CREATE_API_KEY | UPDATE_API_KEY | DELETE_API_KEY
    )
}
