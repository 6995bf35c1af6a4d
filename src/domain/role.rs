//! Roles within a tenant and what each may do. `owner` can do everything, including billing,
//! closing the account and handing ownership to someone else; `admin` manages members and API
//! keys; `member` uses the workspace (documents, queries, usage). An API key acts with the role
//! it was created with, never more than its creator's.

use std::fmt;
use std::str::FromStr;

use super::FieldError;

/// A user's (or an API key's) role in its tenant, from most to least powerful.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

/// Something a role may or may not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Upload, list and delete documents; run queries; read usage; walk the setup wizard.
    UseWorkspace,
    /// See who is in the team.
    ViewMembers,
    /// Invite, resend, revoke; change roles below owner; remove non-owners.
    ManageMembers,
    /// List, create, revoke and rotate API keys.
    ManageKeys,
    /// The billing portal, the subscription.
    ManageBilling,
    /// Email preferences of the account (marketing consent).
    ManagePreferences,
    /// Download everything the tenant has stored.
    ExportData,
    /// Close the account.
    CloseAccount,
    /// Make someone an owner, or change or remove an owner.
    ManageOwners,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Permission::UseWorkspace,
        Permission::ViewMembers,
        Permission::ManageMembers,
        Permission::ManageKeys,
        Permission::ManageBilling,
        Permission::ManagePreferences,
        Permission::ExportData,
        Permission::CloseAccount,
        Permission::ManageOwners,
    ];

    /// What the permission lets one do, for refusals ("your role cannot {this}").
    pub fn describe(self) -> &'static str {
        match self {
            Permission::UseWorkspace => "use the workspace",
            Permission::ViewMembers => "see the team",
            Permission::ManageMembers => "manage members and invitations",
            Permission::ManageKeys => "manage API keys",
            Permission::ManageBilling => "manage billing",
            Permission::ManagePreferences => "change the account's email preferences",
            Permission::ExportData => "export the account's data",
            Permission::CloseAccount => "close the account",
            Permission::ManageOwners => "make, change or remove owners",
        }
    }

    /// The least role that has it.
    pub fn least_role(self) -> Role {
        match self {
            Permission::UseWorkspace | Permission::ViewMembers => Role::Member,
            Permission::ManageMembers | Permission::ManageKeys | Permission::ManagePreferences => {
                Role::Admin
            }
            Permission::ManageBilling
            | Permission::ExportData
            | Permission::CloseAccount
            | Permission::ManageOwners => Role::Owner,
        }
    }
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owner, Role::Admin, Role::Member];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Whether this role may do `p` (roles are ordered: each has what the one below has).
    pub fn allows(self, p: Permission) -> bool {
        self >= p.least_role()
    }

    /// The refusal's words: "an admin cannot close the account; ask an owner".
    pub fn refusal(self, p: Permission) -> String {
        let need = p.least_role();
        let ask = if need == Role::Owner {
            "ask an owner of the account"
        } else {
            "ask an admin or an owner of the account"
        };
        format!("your role ({self}) cannot {}; {ask}", p.describe())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(FieldError::new(
                "role",
                "invalid_role",
                format!("role must be owner, admin or member, not {s:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole matrix, written out by hand: a change to who may do what changes this table.
    #[test]
    fn role_permission_matrix() {
        use Permission::*;
        let expected: [(Permission, [bool; 3]); 9] = [
            //                    owner  admin  member
            (UseWorkspace, [true, true, true]),
            (ViewMembers, [true, true, true]),
            (ManageMembers, [true, true, false]),
            (ManageKeys, [true, true, false]),
            (ManagePreferences, [true, true, false]),
            (ManageBilling, [true, false, false]),
            (ExportData, [true, false, false]),
            (CloseAccount, [true, false, false]),
            (ManageOwners, [true, false, false]),
        ];
        assert_eq!(expected.len(), Permission::ALL.len());
        for (p, row) in expected {
            for (role, allowed) in Role::ALL.into_iter().zip(row) {
                assert_eq!(role.allows(p), allowed, "{role} × {p:?}");
            }
        }
    }

    #[test]
    fn roles_parse_and_refusals_say_who_to_ask() {
        assert_eq!("Admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("boss".parse::<Role>().is_err());
        let m = Role::Member.refusal(Permission::ManageKeys);
        assert!(
            m.contains("member") && m.contains("admin or an owner"),
            "{m}"
        );
        let a = Role::Admin.refusal(Permission::CloseAccount);
        assert!(a.contains("ask an owner"), "{a}");
    }
}
