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

pub const USED_BY_AUTHZD: &[&str] = &[
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
