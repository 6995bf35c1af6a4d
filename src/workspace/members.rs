//! A tenant's team: its users (the signup's email is the first, the owner), their roles, and the
//! invitations that bring new members in, within the plan's `max_users`.
//!
//! The rules here are the product's: members plus pending invitations never exceed the plan's
//! seats (checked with the tenant's row locked, so two concurrent invitations cannot both take
//! the last seat); one email is one user across every tenant; an invitation's link works once and
//! for seven days, and resending it replaces the link; the last owner can be neither demoted nor
//! removed; a removed member's sessions and sign-in links end at once, and so do the API keys
//! they created. Sending the invitation email is the caller's (an edge that may use `email`):
//! every function here works inside the caller's transaction, so the invitation, its email and
//! its audit entry commit together.

use serde::Serialize;

use crate::domain::audit::{Action, Actor};
use crate::domain::{Plan, Role, TenantId, plan::PlanTable};
use crate::store::{AuditEntry, Store, StoreError, StoreResult, Tx, now_ms};
use crate::{with_conn, with_reader};

/// How long an invitation's link works: seven days from when it was (last) sent.
pub const INVITATION_TTL_MS: i64 = 7 * 86_400_000;
/// Longest display name a member may give.
pub const MAX_NAME_CHARS: usize = 100;

/// A user of a tenant.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub tenant_id: TenantId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    tenant_id: String,
    email: String,
    name: String,
    role: String,
    password_hash: String,
    created_at: i64,
}

const USER_COLUMNS: &str = "id, tenant_id, email, name, role, password_hash, created_at";

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(r: UserRow) -> Result<Self, Self::Error> {
        Ok(User {
            tenant_id: TenantId::parse(&r.tenant_id)
                .ok_or_else(|| StoreError::Corrupt(format!("tenant id {}", r.tenant_id)))?,
            role: r
                .role
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("role {}", r.role)))?,
            id: r.id,
            email: r.email,
            name: r.name,
            password_hash: r.password_hash,
            created_at: r.created_at,
        })
    }
}

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvitationState {
    /// Sent, not yet accepted, link still valid: it holds a seat.
    Pending,
    /// Not accepted within seven days: holds no seat; resending revives it.
    Expired,
    Accepted,
    Revoked,
}

/// An invitation (its link's token is never stored, only its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Invitation {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub role: String,
    pub invited_by: String,
    pub created_at: i64,
    pub sent_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const INVITATION_COLUMNS: &str = "id, tenant_id, email, role, invited_by, created_at, sent_at, \
     expires_at, accepted_at, revoked_at";

impl Invitation {
    pub fn state(&self, now: i64) -> InvitationState {
        if self.accepted_at.is_some() {
            InvitationState::Accepted
        } else if self.revoked_at.is_some() {
            InvitationState::Revoked
        } else if self.expires_at <= now {
            InvitationState::Expired
        } else {
            InvitationState::Pending
        }
    }
}

/// Who is acting on the team: a signed-in user, or an API key (acting with its role).
#[derive(Debug, Clone)]
pub struct Acting {
    pub tenant: TenantId,
    pub role: Role,
    /// The signed-in user, or the user who created the key (none for keys provisioning issued).
    pub user_id: Option<String>,
    /// How the audit log names them.
    pub actor: Actor,
}

/// Why a membership change was refused.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(String),
    /// Members plus pending invitations would exceed the plan's seats.
    #[error("{}", seat_message(*plan, *max, *lifting))]
    SeatLimit {
        plan: Plan,
        max: u64,
        lifting: Option<Plan>,
    },
    #[error("this email already belongs to a user; each email can be a member of one account only")]
    EmailTaken,
    #[error("this email already has a pending invitation ({0}); resend it instead")]
    AlreadyInvited(String),
    #[error("the account must keep at least one owner; make someone else an owner first")]
    LastOwner,
    #[error("this invitation was {0} and can no longer be {1}")]
    InvitationClosed(&'static str, &'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for MemberError {
    fn from(e: sqlx::Error) -> Self {
        MemberError::Store(StoreError::Database(e))
    }
}

fn seat_message(plan: Plan, max: u64, lifting: Option<Plan>) -> String {
    let base = format!(
        "the {plan} plan allows {max} users, counting pending invitations, and they are all taken"
    );
    match lifting {
        Some(p) => format!(
            "{base}; upgrade to the {p} plan for more seats, or revoke a pending invitation or \
             remove a member"
        ),
        None => format!("{base}; revoke a pending invitation or remove a member"),
    }
}

/// Whether `taken` seats (members plus pending invitations) leave room for one more.
pub fn seat_available(plans: &PlanTable, plan: Plan, taken: u64) -> Result<(), MemberError> {
    match plans.limits(plan).max_users {
        Some(max) if taken >= max => Err(MemberError::SeatLimit {
            plan,
            max,
            lifting: plans.plan_lifting(taken, |l| l.max_users),
        }),
        _ => Ok(()),
    }
}

/// What accepting an invitation's token achieved.
#[derive(Debug)]
pub enum Accepted {
    /// The user exists now.
    Joined(User),
    AlreadyUsed,
    Expired,
    Revoked,
    Unknown,
}

fn user_of(row: Option<UserRow>) -> StoreResult<Option<User>> {
    row.map(User::try_from).transpose()
}

impl Store {
    /// The user an email belongs to (case-insensitive), with its tenant.
    pub async fn user_by_email(
        &self,
        email_normalized: &str,
    ) -> StoreResult<Option<(User, crate::store::Tenant)>> {
        let row: Option<UserRow> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE email_normalized = $1"
            )))
            .bind(email_normalized)
            .fetch_optional(pool)
            .await?
        });
        let Some(user) = user_of(row)? else {
            return Ok(None);
        };
        let tenant = self
            .tenant(&user.tenant_id)
            .await?
            .ok_or(StoreError::NotFound("tenant"))?;
        Ok(Some((user, tenant)))
    }

    /// A user of `tenant` (another tenant's user is not found).
    pub async fn user(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id)
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        user_of(row)
    }

    /// The tenant's users, oldest first.
    pub async fn members(&self, tenant: &TenantId) -> StoreResult<Vec<User>> {
        let rows: Vec<UserRow> = with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY created_at, id"
            )))
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(User::try_from).collect()
    }

    /// The tenant's open invitations (neither accepted nor revoked; pending or expired), newest
    /// first.
    pub async fn open_invitations(&self, tenant: &TenantId) -> StoreResult<Vec<Invitation>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {INVITATION_COLUMNS} FROM invitations WHERE tenant_id = $1 \
                 AND accepted_at IS NULL AND revoked_at IS NULL ORDER BY created_at DESC, id DESC"
            )))
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        }))
    }

    /// An invitation whose link is still usable, by its token, with the tenant it is for: what
    /// the acceptance page shows before the invitee answers.
    pub async fn invitation_by_token(&self, token: &str) -> StoreResult<Option<Invitation>> {
        Ok(with_reader!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_hash = $1"
            )))
            .bind(super::token_hash(token))
            .fetch_optional(pool)
            .await?
        }))
    }
}

const SEATS_SQL: &str = "SELECT (SELECT COUNT(*) FROM users WHERE tenant_id = $1) + \
     (SELECT COUNT(*) FROM invitations WHERE tenant_id = $1 AND accepted_at IS NULL \
     AND revoked_at IS NULL AND expires_at > $2)";

/// A new invitation's link: 32 random bytes, base64url (only the hash is stored).
fn new_invitation_token() -> String {
    super::random_token(32)
}

impl Tx {
    /// Locks the tenant's row until commit (SQLite has one writer already), so seat counts taken
    /// after it cannot be raced.
    async fn lock_tenant(&mut self, tenant: &TenantId) -> StoreResult<()> {
        let n = with_conn!(self, |conn| {
            sqlx::query("UPDATE tenants SET updated_at = updated_at WHERE id = $1")
                .bind(tenant.as_str())
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound("tenant"));
        }
        Ok(())
    }

    async fn seats_taken_locked(&mut self, tenant: &TenantId, now: i64) -> StoreResult<u64> {
        self.lock_tenant(tenant).await?;
        let n: i64 = with_conn!(self, |conn| {
            sqlx::query_scalar(SEATS_SQL)
                .bind(tenant.as_str())
                .bind(now)
                .fetch_one(&mut *conn)
                .await?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A user of `tenant`, on this transaction's connection.
    pub async fn user(&mut self, tenant: &TenantId, id: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = with_conn!(self, |conn| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id)
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await?
        });
        user_of(row)
    }

    /// The tenant's owner who signed it up (the oldest owner).
    pub async fn first_owner(&mut self, tenant: &TenantId) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = with_conn!(self, |conn| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND role = 'owner' \
                 ORDER BY created_at, id LIMIT 1"
            )))
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await?
        });
        user_of(row)
    }

    /// Replaces a user's password hash.
    pub async fn set_user_password(&mut self, user_id: &str, hash: &str) -> StoreResult<()> {
        self.set_user_column(user_id, "password_hash", hash).await
    }

    /// Sets the name a user is shown by (on the team page, in invitations they send).
    pub async fn set_user_name(&mut self, user_id: &str, name: &str) -> StoreResult<()> {
        self.set_user_column(user_id, "name", name).await
    }

    async fn set_user_column(
        &mut self,
        user_id: &str,
        column: &'static str,
        value: &str,
    ) -> StoreResult<()> {
        let sql = format!("UPDATE users SET {column} = $2, updated_at = $3 WHERE id = $1");
        let n = with_conn!(self, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(user_id)
                .bind(value)
                .bind(now_ms())
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    async fn invitation(&mut self, tenant: &TenantId, id: &str) -> StoreResult<Option<Invitation>> {
        Ok(with_conn!(self, |conn| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {INVITATION_COLUMNS} FROM invitations WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id)
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await?
        }))
    }

    /// Invites `email` (already normalised by the caller: `email_normalized`) into the acting
    /// tenant with `role`. Returns the invitation and its link's token, for the email the
    /// caller sends in this transaction.
    pub async fn invite_member(
        &mut self,
        plans: &PlanTable,
        plan: Plan,
        by: &Acting,
        email: &str,
        email_normalized: &str,
        role: Role,
    ) -> Result<(Invitation, String), MemberError> {
        if role == Role::Owner {
            return Err(MemberError::Forbidden(
                "an invitation makes an admin or a member; once they have joined, an owner can \
                 make them an owner"
                    .into(),
            ));
        }
        let now = now_ms();
        let taken = self.seats_taken_locked(&by.tenant, now).await?;
        let (user_exists, open): (bool, Option<String>) = with_conn!(self, |conn| {
            let user: Option<String> =
                sqlx::query_scalar("SELECT id FROM users WHERE email_normalized = $1")
                    .bind(email_normalized)
                    .fetch_optional(&mut *conn)
                    .await?;
            let open: Option<String> = sqlx::query_scalar(
                "SELECT id FROM invitations WHERE tenant_id = $1 AND email_normalized = $2 \
                 AND accepted_at IS NULL AND revoked_at IS NULL",
            )
            .bind(by.tenant.as_str())
            .bind(email_normalized)
            .fetch_optional(&mut *conn)
            .await?;
            (user.is_some(), open)
        });
        if user_exists {
            return Err(MemberError::EmailTaken);
        }
        if let Some(id) = open {
            return Err(MemberError::AlreadyInvited(id));
        }
        seat_available(plans, plan, taken)?;
        let token = new_invitation_token();
        let invitation = Invitation {
            id: format!("inv_{}", ulid::Ulid::new()),
            tenant_id: by.tenant.to_string(),
            email: email.to_string(),
            role: role.as_str().to_string(),
            invited_by: by.actor.to_string(),
            created_at: now,
            sent_at: now,
            expires_at: now + INVITATION_TTL_MS,
            accepted_at: None,
            revoked_at: None,
        };
        with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO invitations (id, tenant_id, email, email_normalized, role, token_hash, \
                 invited_by, created_at, sent_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
            )
            .bind(&invitation.id)
            .bind(&invitation.tenant_id)
            .bind(email)
            .bind(email_normalized)
            .bind(role.as_str())
            .bind(super::token_hash(&token))
            .bind(&invitation.invited_by)
            .bind(now)
            .bind(invitation.expires_at)
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::unique(e, "invitation"))?;
        });
        self.audit(
            &AuditEntry::new(by.actor.clone(), Action::MemberInvited)
                .target(&invitation.id)
                .with("tenant_id", by.tenant.as_str())
                .with("role", role.as_str()),
        )
        .await?;
        Ok((invitation, token))
    }

    /// Replaces an open invitation's link with a new one valid for seven more days (the old
    /// link stops working). An expired invitation takes a seat again, so it needs one free.
    pub async fn resend_invitation(
        &mut self,
        plans: &PlanTable,
        plan: Plan,
        by: &Acting,
        id: &str,
    ) -> Result<(Invitation, String), MemberError> {
        let now = now_ms();
        let taken = self.seats_taken_locked(&by.tenant, now).await?;
        let mut inv = self
            .invitation(&by.tenant, id)
            .await?
            .ok_or(MemberError::NotFound("invitation"))?;
        match inv.state(now) {
            InvitationState::Pending => {}
            InvitationState::Expired => seat_available(plans, plan, taken)?,
            InvitationState::Accepted => {
                return Err(MemberError::InvitationClosed("accepted", "resent"));
            }
            InvitationState::Revoked => {
                return Err(MemberError::InvitationClosed("revoked", "resent"));
            }
        }
        let token = new_invitation_token();
        inv.sent_at = now;
        inv.expires_at = now + INVITATION_TTL_MS;
        with_conn!(self, |conn| {
            sqlx::query(
                "UPDATE invitations SET token_hash = $3, sent_at = $4, expires_at = $5 \
                 WHERE id = $1 AND tenant_id = $2",
            )
            .bind(id)
            .bind(by.tenant.as_str())
            .bind(super::token_hash(&token))
            .bind(now)
            .bind(inv.expires_at)
            .execute(&mut *conn)
            .await?;
        });
        self.audit(
            &AuditEntry::new(by.actor.clone(), Action::InvitationResent)
                .target(id)
                .with("tenant_id", by.tenant.as_str()),
        )
        .await?;
        Ok((inv, token))
    }

    /// Revokes an open invitation: its link stops working and its seat is free.
    pub async fn revoke_invitation(&mut self, by: &Acting, id: &str) -> Result<(), MemberError> {
        let now = now_ms();
        let inv = self
            .invitation(&by.tenant, id)
            .await?
            .ok_or(MemberError::NotFound("invitation"))?;
        match inv.state(now) {
            InvitationState::Accepted => {
                return Err(MemberError::InvitationClosed("accepted", "revoked"));
            }
            InvitationState::Revoked => {
                return Err(MemberError::InvitationClosed("revoked", "revoked"));
            }
            InvitationState::Pending | InvitationState::Expired => {}
        }
        with_conn!(self, |conn| {
            sqlx::query(
                "UPDATE invitations SET revoked_at = $3 WHERE id = $1 AND tenant_id = $2 \
                 AND revoked_at IS NULL AND accepted_at IS NULL",
            )
            .bind(id)
            .bind(by.tenant.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await?;
        });
        self.audit(
            &AuditEntry::new(by.actor.clone(), Action::InvitationRevoked)
                .target(id)
                .with("tenant_id", by.tenant.as_str()),
        )
        .await?;
        Ok(())
    }

    /// Accepts an invitation with its token: creates the user (name and password hash given by
    /// the invitee) with the invited role, at most once whatever the concurrency. The seat was
    /// taken when the invitation was sent, so a downgrade since does not undo it.
    pub async fn accept_invitation(
        &mut self,
        token: &str,
        name: &str,
        password_hash: &str,
    ) -> Result<Accepted, MemberError> {
        let hash = super::token_hash(token);
        let now = now_ms();
        let claimed: Option<(String, String, String, String, String)> = with_conn!(self, |conn| {
            sqlx::query_as(
                "UPDATE invitations SET accepted_at = $2 WHERE token_hash = $1 \
                 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
                 RETURNING id, tenant_id, email, email_normalized, role",
            )
            .bind(&hash)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?
        });
        let Some((inv_id, tenant, email, email_normalized, role)) = claimed else {
            let row: Option<(Option<i64>, Option<i64>, i64)> = with_conn!(self, |conn| {
                sqlx::query_as(
                    "SELECT accepted_at, revoked_at, expires_at FROM invitations WHERE token_hash = $1",
                )
                .bind(&hash)
                .fetch_optional(&mut *conn)
                .await?
            });
            return Ok(match row {
                None => Accepted::Unknown,
                Some((Some(_), _, _)) => Accepted::AlreadyUsed,
                Some((None, Some(_), _)) => Accepted::Revoked,
                Some((None, None, _)) => Accepted::Expired,
            });
        };
        let user = User {
            id: format!("usr_{}", ulid::Ulid::new()),
            tenant_id: TenantId::parse(&tenant)
                .ok_or_else(|| StoreError::Corrupt(format!("tenant id {tenant}")))?,
            email,
            name: name.to_string(),
            role: role
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("role {role}")))?,
            password_hash: password_hash.to_string(),
            created_at: now,
        };
        with_conn!(self, |conn| {
            sqlx::query(
                "INSERT INTO users (id, tenant_id, email, email_normalized, name, password_hash, role, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(&user.id)
            .bind(&tenant)
            .bind(&user.email)
            .bind(&email_normalized)
            .bind(name)
            .bind(password_hash)
            .bind(user.role.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::unique(e, "email"))?;
            sqlx::query("UPDATE invitations SET accepted_user_id = $2 WHERE id = $1")
                .bind(&inv_id)
                .bind(&user.id)
                .execute(&mut *conn)
                .await?;
        });
        self.audit(
            &AuditEntry::new(Actor::Member(user.id.clone()), Action::MemberJoined)
                .target(&user.id)
                .with("tenant_id", tenant.as_str())
                .with("invitation_id", inv_id.as_str())
                .with("role", user.role.as_str()),
        )
        .await?;
        Ok(Accepted::Joined(user))
    }

    async fn owners(&mut self, tenant: &TenantId) -> StoreResult<i64> {
        Ok(with_conn!(self, |conn| {
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND role = 'owner'")
                .bind(tenant.as_str())
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    /// Checks that `by` may change `target` (to `new_role`, or remove them when `None`).
    fn may_change(by: &Acting, target: &User, new_role: Option<Role>) -> Result<(), MemberError> {
        use crate::domain::Permission;
        if !by.role.allows(Permission::ManageMembers) {
            return Err(MemberError::Forbidden(
                by.role.refusal(Permission::ManageMembers),
            ));
        }
        let touches_owner = target.role == Role::Owner || new_role == Some(Role::Owner);
        if touches_owner && !by.role.allows(Permission::ManageOwners) {
            return Err(MemberError::Forbidden(
                by.role.refusal(Permission::ManageOwners),
            ));
        }
        Ok(())
    }

    /// Changes a member's role. The last owner cannot be demoted; API keys the member created
    /// with a role above the new one are revoked (a key never outranks its creator). Returns the
    /// user as changed and the ids of the keys revoked.
    pub async fn set_member_role(
        &mut self,
        by: &Acting,
        user_id: &str,
        role: Role,
    ) -> Result<(User, Vec<String>), MemberError> {
        self.lock_tenant(&by.tenant).await?;
        let mut user = self
            .user(&by.tenant, user_id)
            .await?
            .ok_or(MemberError::NotFound("member"))?;
        Self::may_change(by, &user, Some(role))?;
        if user.role == role {
            return Ok((user, Vec::new()));
        }
        if user.role == Role::Owner && self.owners(&by.tenant).await? <= 1 {
            return Err(MemberError::LastOwner);
        }
        let from = user.role;
        with_conn!(self, |conn| {
            sqlx::query(
                "UPDATE users SET role = $3, updated_at = $4 WHERE id = $1 AND tenant_id = $2",
            )
            .bind(user_id)
            .bind(by.tenant.as_str())
            .bind(role.as_str())
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        });
        user.role = role;
        let revoked = self.revoke_keys_of(&by.tenant, user_id, Some(role)).await?;
        self.audit(
            &AuditEntry::new(by.actor.clone(), Action::MemberRoleChanged)
                .target(user_id)
                .with("tenant_id", by.tenant.as_str())
                .with("from", from.as_str())
                .with("to", role.as_str()),
        )
        .await?;
        Ok((user, revoked))
    }

    /// Removes a member: their sessions and sign-in links end now, the API keys they created
    /// are revoked, and the user is deleted (the audit log keeps their id). The last owner
    /// cannot be removed. Returns the ids of the keys revoked.
    pub async fn remove_member(
        &mut self,
        by: &Acting,
        user_id: &str,
    ) -> Result<Vec<String>, MemberError> {
        self.lock_tenant(&by.tenant).await?;
        let user = self
            .user(&by.tenant, user_id)
            .await?
            .ok_or(MemberError::NotFound("member"))?;
        Self::may_change(by, &user, None)?;
        if user.role == Role::Owner && self.owners(&by.tenant).await? <= 1 {
            return Err(MemberError::LastOwner);
        }
        let revoked = self.revoke_keys_of(&by.tenant, user_id, None).await?;
        let sessions = with_conn!(self, |conn| {
            let n = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM login_tokens WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM users WHERE id = $1 AND tenant_id = $2")
                .bind(user_id)
                .bind(by.tenant.as_str())
                .execute(&mut *conn)
                .await?;
            n
        });
        self.audit(
            &AuditEntry::new(by.actor.clone(), Action::MemberRemoved)
                .target(user_id)
                .with("tenant_id", by.tenant.as_str())
                .with("role", user.role.as_str())
                .with("sessions_ended", sessions)
                .with("keys_revoked", revoked.len()),
        )
        .await?;
        Ok(revoked)
    }

    /// Revokes the live keys `user_id` created in `tenant` that act above `keep` (every one when
    /// `None`), in one statement; returns their ids (each audited).
    async fn revoke_keys_of(
        &mut self,
        tenant: &TenantId,
        user_id: &str,
        keep: Option<Role>,
    ) -> StoreResult<Vec<String>> {
        let rank = |r: Role| match r {
            Role::Member => 0_i64,
            Role::Admin => 1,
            Role::Owner => 2,
        };
        let revoked: Vec<String> = with_conn!(self, |conn| {
            sqlx::query_scalar(
                "UPDATE api_keys SET revoked_at = $4, reveal_jti = NULL WHERE tenant_id = $1 \
                 AND created_by = $2 AND revoked_at IS NULL \
                 AND (CASE role WHEN 'owner' THEN 2 WHEN 'admin' THEN 1 ELSE 0 END) > $3 RETURNING id",
            )
            .bind(tenant.as_str())
            .bind(user_id)
            .bind(keep.map_or(-1, rank))
            .bind(now_ms())
            .fetch_all(&mut *conn)
            .await?
        });
        for id in &revoked {
            self.audit(
                &AuditEntry::new(Actor::System, Action::ApiKeyRevoked)
                    .target(id)
                    .with("tenant_id", tenant.as_str())
                    .with("reason", "its creator's role no longer allows it"),
            )
            .await?;
        }
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitation_states_follow_their_times() {
        let mut inv = Invitation {
            id: "inv_1".into(),
            tenant_id: "tenant_1".into(),
            email: "a@b.co".into(),
            role: "member".into(),
            invited_by: "operator".into(),
            created_at: 0,
            sent_at: 0,
            expires_at: 1_000,
            accepted_at: None,
            revoked_at: None,
        };
        assert_eq!(inv.state(999), InvitationState::Pending);
        assert_eq!(inv.state(1_000), InvitationState::Expired);
        inv.revoked_at = Some(5);
        assert_eq!(inv.state(10), InvitationState::Revoked);
        inv.accepted_at = Some(5);
        assert_eq!(inv.state(10), InvitationState::Accepted);
    }

    #[test]
    fn seats_are_limited_per_plan_and_the_refusal_names_the_plan_that_lifts_it() {
        let plans = PlanTable::default();
        assert!(seat_available(&plans, Plan::Starter, 2).is_ok());
        let e = seat_available(&plans, Plan::Starter, 3).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("starter plan allows 3 users"), "{m}");
        assert!(m.contains("upgrade to the pro plan"), "{m}");
        let e = seat_available(&plans, Plan::Pro, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("upgrade to the enterprise plan"), "{e}");
        assert!(seat_available(&plans, Plan::Enterprise, 10_000).is_ok());
        // Over the limit after a downgrade: still refused, still names the plan.
        let e = seat_available(&plans, Plan::Starter, 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("upgrade to the pro plan"), "{e}");
    }
}
