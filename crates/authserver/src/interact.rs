//! The browser steps of a parked authorization request: sign in, choose a patient,
//! consent (with scopes the user may untick), then the code redirect. Every POST needs
//! the session's CSRF token and, when the browser sends one, a same-origin `Origin`.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use crate::authorize::{
    CODE_TTL, cookie_value, error_redirect, redirect_to_client, see_other, server_error_page,
};
use crate::error::OAuthErrorCode;
use crate::issue::new_grant_id;
use crate::session::{COOKIE_NAME, Pending, Session};
use crate::store::{CodeRecord, Grant, User};
use crate::util::{Params, ct_eq, origin_of, random_token, sha256};
use crate::{AuthServer, Inner, scope};

const PICKER_LIMIT: usize = 50;

#[derive(Serialize)]
struct ScopeItem {
    value: String,
    text: String,
}

/// The pending request and its session, after checking the browser owns both.
struct Ctx {
    id: String,
    pending: Pending,
    cookie: String,
    session: Session,
}

fn forbidden(inner: &Inner, msg: &str) -> Response {
    inner.pages.error(
        StatusCode::FORBIDDEN,
        OAuthErrorCode::AccessDenied.as_str(),
        msg,
    )
}

impl Inner {
    fn load_ctx(&self, id: &str, headers: &HeaderMap) -> Result<Ctx, Box<Response>> {
        let now = self.config.clock.now();
        let pending = self.sessions.pending(id, now).ok_or_else(|| {
            Box::new(self.pages.error(
                StatusCode::BAD_REQUEST,
                OAuthErrorCode::InvalidRequest.as_str(),
                "This sign-in request has expired or is unknown. Start again from the application.",
            ))
        })?;
        let cookie = cookie_value(headers, COOKIE_NAME).unwrap_or_default();
        let session = self
            .sessions
            .get(cookie, now)
            .filter(|_| ct_eq(&sha256(cookie.as_bytes()), &pending.session_key))
            .ok_or_else(|| {
                Box::new(forbidden(
                    self,
                    "This sign-in request belongs to another browser session.",
                ))
            })?;
        Ok(Ctx {
            id: id.to_string(),
            pending,
            cookie: cookie.to_string(),
            session,
        })
    }

    /// CSRF token plus `Origin` check (O12).
    fn check_post(
        &self,
        ctx: &Ctx,
        headers: &HeaderMap,
        form: &Params,
    ) -> Result<(), Box<Response>> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let expected = origin_of(&self.config.issuer);
            if origin.to_str().ok() != expected.as_deref() {
                return Err(Box::new(forbidden(
                    self,
                    "Cross-site form submission refused.",
                )));
            }
        }
        let token = form.one("csrf").ok().flatten().unwrap_or_default();
        if token.is_empty() || !ct_eq(token.as_bytes(), ctx.session.csrf.as_bytes()) {
            return Err(Box::new(forbidden(
                self,
                "The form has expired. Go back and try again.",
            )));
        }
        Ok(())
    }

    fn user_of(&self, session: &Session) -> Option<User> {
        self.store.user(session.user_id.as_deref()?).ok().flatten()
    }

    fn step_url(&self, id: &str, step: &str) -> String {
        format!("{}/interact/{id}{step}", self.config.issuer)
    }

    /// Renders whatever the request needs next.
    fn next_step(&self, ctx: &Ctx, query: &str, login_error: Option<&str>) -> Response {
        let p = &ctx.pending;
        let mut bound_patient = p.patient.clone();
        let Some(user) = self.user_of(&ctx.session) else {
            return self.pages.render(
                if login_error.is_some() {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                },
                "login.html",
                context! {
                    client_name => p.client_name, csrf => ctx.session.csrf,
                    action => self.step_url(&ctx.id, "/login"), error => login_error,
                },
            );
        };
        let needs_patient = p
            .scopes
            .iter()
            .any(|s| s == "launch/patient" || scope::is_patient_scope(s));
        if let Some(own) = user.patient_id() {
            // A patient only ever gets their own record, whatever the launch said.
            if p.patient.as_deref().is_some_and(|chosen| chosen != own) {
                return self.deny(
                    ctx,
                    "the launch names a different patient than the signed-in user",
                );
            }
            if p.patient.is_none() && needs_patient {
                let own = own.to_string();
                let copy = own.clone();
                self.sessions
                    .update_pending(&ctx.id, |pp| pp.patient = Some(copy));
                bound_patient = Some(own);
            }
        } else if p.patient.is_none() && needs_patient {
            let patients = match self.store.search_patients(query, PICKER_LIMIT) {
                Ok(list) => list,
                Err(_) => return server_error_page(self),
            };
            return self.pages.render(
                StatusCode::OK,
                "picker.html",
                context! {
                    client_name => p.client_name, csrf => ctx.session.csrf, query => query,
                    patients => patients, action => self.step_url(&ctx.id, "/patient"),
                    search_action => self.step_url(&ctx.id, ""),
                },
            );
        }
        let patient_label =
            bound_patient
                .as_ref()
                .map(|id| match self.store.patient(id).ok().flatten() {
                    Some(entry) => format!("{} ({id})", entry.display_name),
                    None => id.clone(),
                });
        let scopes: Vec<ScopeItem> = p
            .scopes
            .iter()
            .map(|s| ScopeItem {
                value: s.clone(),
                text: scope::describe(s),
            })
            .collect();
        self.pages.render(
            StatusCode::OK,
            "consent.html",
            context! {
                client_name => p.client_name, csrf => ctx.session.csrf, user_name => user.display_name,
                patient => patient_label, scopes => scopes, action => self.step_url(&ctx.id, "/consent"),
            },
        )
    }

    fn deny(&self, ctx: &Ctx, why: &str) -> Response {
        self.sessions.take_pending(&ctx.id);
        error_redirect(
            &ctx.pending.redirect_uri,
            Some(&ctx.pending.state),
            OAuthErrorCode::AccessDenied,
            why,
        )
    }
}

pub async fn show(
    State(server): State<AuthServer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let inner = &server.inner;
    let ctx = match inner.load_ctx(&id, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let q = params
        .one("q")
        .ok()
        .flatten()
        .unwrap_or_default()
        .trim()
        .to_string();
    inner.next_step(&ctx, &q, None)
}

/// Verifies a password off the async runtime (argon2 is deliberately slow). Unknown
/// users cost the same as known ones.
async fn verify_password(hash: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || match hash {
        Some(h) => PasswordHash::new(&h)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false),
        None => {
            let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>());
            if let Ok(salt) = salt {
                let _ = Argon2::default().hash_password(password.as_bytes(), &salt);
            }
            false
        }
    })
    .await
    .unwrap_or(false)
}

pub async fn login(
    State(server): State<AuthServer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inner = &server.inner;
    let ctx = match inner.load_ctx(&id, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let form = Params::parse(&body);
    if let Err(r) = inner.check_post(&ctx, &headers, &form) {
        return *r;
    }
    let username = form
        .one("username")
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string();
    let password = form
        .one("password")
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string();
    let now = inner.config.clock.now();
    let lock_key = format!("user:{username}");
    if inner.lockout.check(&lock_key, now).is_err() {
        let mut r = inner.next_step(&ctx, "", Some("Too many failed attempts. Try again later."));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return r;
    }
    let user = match inner.store.user_by_username(&username) {
        Ok(u) => u,
        Err(_) => return server_error_page(inner),
    };
    let ok = verify_password(user.as_ref().map(|u| u.password_hash.clone()), password).await;
    let Some(user) = user.filter(|_| ok) else {
        inner.lockout.fail(&lock_key, now);
        return inner.next_step(&ctx, "", Some("Wrong username or password."));
    };
    inner.lockout.succeed(&lock_key);
    // A new session id on login defeats session fixation; the request follows along.
    let Some((cookie, _)) = inner.sessions.create(now) else {
        return server_error_page(inner);
    };
    inner.sessions.login(&cookie, &user.id);
    inner.sessions.remove(&ctx.cookie);
    let key = sha256(cookie.as_bytes());
    inner.sessions.update_pending(&id, |p| p.session_key = key);
    let mut resp = see_other(&inner.step_url(&id, ""));
    if let Some(c) = inner.session_cookie(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

pub async fn choose_patient(
    State(server): State<AuthServer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inner = &server.inner;
    let ctx = match inner.load_ctx(&id, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let form = Params::parse(&body);
    if let Err(r) = inner.check_post(&ctx, &headers, &form) {
        return *r;
    }
    let Some(user) = inner.user_of(&ctx.session) else {
        return see_other(&inner.step_url(&id, ""));
    };
    if user.patient_id().is_some() {
        return forbidden(inner, "Patients cannot choose another patient's record.");
    }
    let chosen = form.one("patient").ok().flatten().unwrap_or_default();
    match inner.store.patient(chosen) {
        Ok(Some(p)) => {
            inner
                .sessions
                .update_pending(&id, |pp| pp.patient = Some(p.id));
            see_other(&inner.step_url(&id, ""))
        }
        Ok(None) => inner.pages.error(
            StatusCode::BAD_REQUEST,
            OAuthErrorCode::InvalidRequest.as_str(),
            "Unknown patient.",
        ),
        Err(_) => server_error_page(inner),
    }
}

pub async fn consent(
    State(server): State<AuthServer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inner = &server.inner;
    let ctx = match inner.load_ctx(&id, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let form = Params::parse(&body);
    if let Err(r) = inner.check_post(&ctx, &headers, &form) {
        return *r;
    }
    let Some(user) = inner.user_of(&ctx.session) else {
        return see_other(&inner.step_url(&id, ""));
    };
    if form.one("decision").ok().flatten() != Some("allow") {
        return inner.deny(&ctx, "the user denied the request");
    }
    let ticked = form.all("scope");
    // Only what was asked for and left ticked: a form cannot add scopes.
    let granted: Vec<String> = ctx
        .pending
        .scopes
        .iter()
        .filter(|s| ticked.contains(&s.as_str()))
        .cloned()
        .collect();
    let p = &ctx.pending;
    let needs_patient = granted
        .iter()
        .any(|s| scope::is_patient_scope(s) || s == "launch/patient");
    if granted.is_empty() || (needs_patient && p.patient.is_none()) {
        return inner.deny(&ctx, "nothing was granted");
    }
    let Some(p) = inner.sessions.take_pending(&id) else {
        return see_other(&inner.step_url(&id, ""));
    };
    let now = inner.config.clock.now();
    let grant = Grant {
        id: new_grant_id(),
        client_id: p.client_id.clone(),
        user_id: Some(user.id.clone()),
        scope: scope::join(&granted),
        patient: p
            .patient
            .clone()
            .filter(|_| needs_patient || p.launch.is_some()),
        encounter: p.launch.as_ref().and_then(|l| l.encounter.clone()),
        fhir_user: user.fhir_user.clone(),
        need_patient_banner: p.launch.as_ref().is_none_or(|l| l.need_patient_banner),
        revoked: false,
    };
    let code = random_token();
    let stored = inner.store.insert_grant(&grant, now).and_then(|()| {
        inner.store.insert_code(
            &sha256(code.as_bytes()),
            &CodeRecord {
                grant_id: grant.id.clone(),
                client_id: p.client_id.clone(),
                redirect_uri: p.redirect_uri.clone(),
                code_challenge: p.code_challenge.clone(),
                nonce: p.nonce.clone(),
                expires_at: now + CODE_TTL,
            },
        )
    });
    if stored.is_err() {
        return error_redirect(
            &p.redirect_uri,
            Some(&p.state),
            OAuthErrorCode::ServerError,
            "internal error",
        );
    }
    redirect_to_client(&p.redirect_uri, &[("code", &code), ("state", &p.state)])
}
