//! Dashboard sessions: the keyed hash of the cookie, its user, and the
//! management token it was opened with (revoking the token ends the session).

use super::users::prefixed;
use super::{hex_encode, rows, Store, StoreError};
use crate::domain::{now_ms, User};

impl Store {
    /// Opens a session for the owner of a live management token; `None` when the token is not live.
    pub async fn create_session(
        &self,
        session_hash: &[u8; 32],
        token_hash: &[u8; 32],
        expires_at: i64,
    ) -> Result<Option<User>, StoreError> {
        let Some(user) = self.find_user_by_token_hash(token_hash).await? else {
            return Ok(None);
        };
        let now = now_ms();
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (session_hash, user_id, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hex_encode(session_hash))
        .bind(&user.id)
        .bind(hex_encode(token_hash))
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(Some(user))
    }

    /// The user of a live, unexpired session whose token is not revoked.
    pub async fn find_session_user(
        &self,
        session_hash: &[u8; 32],
    ) -> Result<Option<User>, StoreError> {
        let query = format!(
            "SELECT {} FROM dashboard_sessions s \
             JOIN management_tokens t ON t.token_hash = s.token_hash AND t.user_id = s.user_id \
             JOIN users u ON u.id = s.user_id \
             WHERE s.session_hash = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
            prefixed(rows::USER_COLUMNS, "u")
        );
        let row = sqlx::query(&query)
            .bind(hex_encode(session_hash))
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::user).transpose()
    }

    /// Ends a session (sign-out); ending an unknown session is not an error.
    pub async fn delete_session(&self, session_hash: &[u8; 32]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE session_hash = $1")
            .bind(hex_encode(session_hash))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
