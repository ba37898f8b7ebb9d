//! ACLs and Object Ownership: canned ACLs and `x-amz-grant-*` headers on CreateBucket,
//! PutObject, CopyObject and CreateMultipartUpload; Get/PutBucketAcl and
//! Get/PutObjectAcl with AccessControlPolicy XML; Get/Put/DeleteBucketOwnershipControls.
//!
//! Stored with the bucket (or the object) and answered as AWS answers, including its
//! refusals (AccessControlListNotSupported under BucketOwnerEnforced, AccessDenied for a
//! public ACL under BlockPublicAcls). Grants are not enforced: firelake has one identity.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde::Deserialize;

use crate::http::{Body, RequestCtx};
use crate::s3::common::{blocking, change_bucket, no_body, owner_id, parse_xml, read_small_body, store_error, write_owner, xml_response};
use crate::s3::error::{Code, Result, S3Error};
use crate::s3::router::check_key;
use crate::s3::xml::Xml;
use crate::s3::{Req, S3State};
use crate::store::settings::OWNERSHIP_ENFORCED;
use crate::store::{BucketInfo, Grant, PublicAccessBlock};

pub const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
pub const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
const LOG_DELIVERY: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";
const PERMISSIONS: [&str; 5] = ["FULL_CONTROL", "WRITE", "WRITE_ACP", "READ", "READ_ACP"];
const OWNERSHIPS: [&str; 3] = [OWNERSHIP_ENFORCED, "BucketOwnerPreferred", "ObjectWriter"];
/// The grant headers and the permission each gives.
const GRANT_HEADERS: [(&str, &str); 5] = [
    ("x-amz-grant-full-control", "FULL_CONTROL"),
    ("x-amz-grant-read", "READ"),
    ("x-amz-grant-read-acp", "READ_ACP"),
    ("x-amz-grant-write", "WRITE"),
    ("x-amz-grant-write-acp", "WRITE_ACP"),
];

/// Which resource an ACL is for: canned ACLs and `x-amz-grant-write` differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Bucket,
    Object,
}

fn owner_grant(account: &str) -> Grant {
    Grant {
        grantee_type: "CanonicalUser".to_owned(),
        grantee: owner_id(account),
        display_name: Some(account.to_owned()),
        permission: "FULL_CONTROL".to_owned(),
    }
}

fn group_grant(uri: &str, permission: &str) -> Grant {
    Grant { grantee_type: "Group".to_owned(), grantee: uri.to_owned(), display_name: None, permission: permission.to_owned() }
}

/// The grants of a canned ACL. With one identity, the bucket owner is also every
/// object's writer, so `bucket-owner-read` and `bucket-owner-full-control` are `private`.
fn canned(name: &str, resource: Resource, account: &str) -> Result<Vec<Grant>> {
    let mut grants = vec![owner_grant(account)];
    match (name, resource) {
        ("private", _) | ("bucket-owner-read" | "bucket-owner-full-control", Resource::Object) => {}
        // The User Guide: the bucket-owner ACLs are ignored on buckets.
        ("bucket-owner-read" | "bucket-owner-full-control", Resource::Bucket) => {}
        ("public-read", _) => grants.push(group_grant(ALL_USERS, "READ")),
        ("public-read-write", _) => {
            grants.push(group_grant(ALL_USERS, "READ"));
            grants.push(group_grant(ALL_USERS, "WRITE"));
        }
        ("authenticated-read", _) => grants.push(group_grant(AUTHENTICATED_USERS, "READ")),
        ("log-delivery-write", Resource::Bucket) => {
            grants.push(group_grant(LOG_DELIVERY, "WRITE"));
            grants.push(group_grant(LOG_DELIVERY, "READ_ACP"));
        }
        ("aws-exec-read", Resource::Object) => return Err(S3Error::not_implemented("the canned ACL aws-exec-read")),
        (other, _) => return Err(S3Error::invalid_argument("", "x-amz-acl", other)),
    }
    Ok(grants)
}

/// A grantee of a grant header or an AccessControlPolicy, checked.
fn grantee(kind: &str, value: &str, permission: &str, account: &str) -> Result<Grant> {
    match kind {
        "id" => Ok(Grant {
            grantee_type: "CanonicalUser".to_owned(),
            grantee: value.to_owned(),
            display_name: (value == owner_id(account)).then(|| account.to_owned()),
            permission: permission.to_owned(),
        }),
        "uri" if [ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY].contains(&value) => Ok(group_grant(value, permission)),
        "uri" => Err(S3Error::invalid_argument("Invalid group uri", "uri", value)),
        // AWS stopped accepting email grantees on 2025-10-01.
        "emailAddress" => Err(S3Error::new(Code::MethodNotAllowed, "Email Grantee ACLs are no longer supported")),
        other => Err(S3Error::invalid_argument("Argument format not recognized", other, value)),
    }
}

/// Parses the `x-amz-grant-*` headers: each a comma list of `id="..."`, `uri="..."`.
fn grant_headers(req: &Req, resource: Resource, account: &str) -> Result<Option<Vec<Grant>>> {
    let mut grants = Vec::new();
    let mut any = false;
    for (header, permission) in GRANT_HEADERS {
        let Some(value) = req.header(header) else { continue };
        any = true;
        if header == "x-amz-grant-write" && resource == Resource::Object {
            return Err(S3Error::not_implemented("x-amz-grant-write on an object"));
        }
        for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((kind, quoted)) = item.split_once('=') else {
                return Err(S3Error::invalid_argument("Argument format not recognized", header, value));
            };
            grants.push(grantee(kind.trim(), quoted.trim().trim_matches('"'), permission, account)?);
        }
    }
    Ok(any.then_some(grants))
}

/// The ACL a request's headers ask for (`x-amz-acl` or `x-amz-grant-*`); `None` when
/// they ask for none.
pub fn from_headers(req: &Req, resource: Resource, account: &str) -> Result<Option<Vec<Grant>>> {
    let grants = grant_headers(req, resource, account)?;
    match (req.header("x-amz-acl"), grants) {
        (Some(_), Some(_)) => Err(S3Error::invalid_request("Specifying both Canned ACLs and Header Grants is not allowed")),
        (Some(name), None) => Ok(Some(canned(name.trim(), resource, account)?)),
        (None, grants) => Ok(grants),
    }
}

/// Whether grants are the default ACL (the owner's FULL_CONTROL only).
fn is_default(grants: &[Grant], account: &str) -> bool {
    grants == [owner_grant(account)]
}

/// Whether grants give anything to everyone or to every AWS account.
pub fn is_public(grants: &[Grant]) -> bool {
    grants.iter().any(|g| g.grantee_type == "Group" && (g.grantee == ALL_USERS || g.grantee == AUTHENTICATED_USERS))
}

fn not_supported() -> S3Error {
    S3Error::new(Code::AccessControlListNotSupported, "The bucket does not allow ACLs")
}

/// Checks an ACL to be set against the bucket's ownership and public access block;
/// answers what to store (`None`: the default ACL).
fn admit(info: &BucketInfo, grants: Vec<Grant>, account: &str) -> Result<Option<Vec<Grant>>> {
    let default = is_default(&grants, account);
    if info.ownership.as_deref() == Some(OWNERSHIP_ENFORCED) && !default {
        return Err(not_supported());
    }
    if info.public_access_block.is_some_and(|p| p.block_public_acls) && is_public(&grants) {
        return Err(S3Error::new(Code::AccessDenied, "Access Denied"));
    }
    Ok((!default).then_some(grants))
}

/// The ACL an object write (PutObject, CopyObject, CreateMultipartUpload) asks for,
/// admitted by the bucket's settings; `None`: the default. A write that asks for none
/// (or for the default) costs no look at the bucket.
pub async fn for_object_write(state: &Arc<S3State>, req: &Req, bucket: &str, account: &str) -> Result<Option<Vec<Grant>>> {
    let Some(grants) = from_headers(req, Resource::Object, account)? else { return Ok(None) };
    if is_default(&grants, account) {
        return Ok(None);
    }
    let info = bucket_info(state, bucket).await?;
    admit(&info, grants, account)
}

/// The settings CreateBucket's headers give: Object Ownership (`x-amz-object-ownership`,
/// BucketOwnerEnforced by default, as AWS) and the ACL.
pub fn for_new_bucket(req: &Req, info: &mut BucketInfo, account: &str) -> Result<()> {
    if let Some(ownership) = req.header("x-amz-object-ownership") {
        if !OWNERSHIPS.contains(&ownership) {
            return Err(S3Error::invalid_argument("Invalid x-amz-object-ownership header", "x-amz-object-ownership", ownership));
        }
        info.ownership = Some(ownership.to_owned());
    }
    let Some(grants) = from_headers(req, Resource::Bucket, account)? else { return Ok(()) };
    if is_default(&grants, account) {
        return Ok(());
    }
    if info.ownership.as_deref() == Some(OWNERSHIP_ENFORCED) {
        return Err(S3Error::new(
            Code::InvalidBucketAclWithObjectOwnership,
            "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
        ));
    }
    // A new bucket blocks public access, so a public ACL cannot be set at creation.
    if is_public(&grants) && info.public_access_block.is_some_and(|p| p.block_public_acls) {
        return Err(S3Error::new(
            Code::InvalidBucketAclWithBlockPublicAccessError,
            "Bucket cannot have public ACLs set with BlockPublicAccess enabled",
        ));
    }
    info.acl = Some(grants);
    Ok(())
}

async fn bucket_info(state: &Arc<S3State>, bucket: &str) -> Result<BucketInfo> {
    let name = bucket.to_owned();
    blocking(state, move |store| store.bucket(&name)).await??.ok_or_else(|| S3Error::no_such_bucket(bucket))
}

fn owner_of(info: &BucketInfo, ctx: &RequestCtx) -> String {
    if info.owner.is_empty() { ctx.account.clone() } else { info.owner.clone() }
}

/// `<AccessControlPolicy>` of `grants` (the default ACL when `None`).
fn policy_xml(owner: &str, grants: Option<&[Grant]>) -> String {
    let default = [owner_grant(owner)];
    let grants = grants.unwrap_or(&default);
    let mut x = Xml::document();
    x.root("AccessControlPolicy");
    write_owner(&mut x, "Owner", owner);
    x.node("AccessControlList", |x| {
        for grant in grants {
            x.open("Grant");
            x.raw("<Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"");
            x.text(&grant.grantee_type);
            x.raw("\">");
            match grant.grantee_type.as_str() {
                "Group" => x.leaf("URI", &grant.grantee),
                _ => {
                    x.leaf("ID", &grant.grantee);
                    x.leaf_opt("DisplayName", grant.display_name.as_deref());
                }
            }
            x.close("Grantee");
            x.leaf("Permission", &grant.permission);
            x.close("Grant");
        }
    });
    x.close("AccessControlPolicy");
    x.finish()
}

#[derive(Debug, Deserialize)]
pub(crate) struct AccessControlPolicy {
    #[serde(rename = "AccessControlList")]
    list: Option<AccessControlList>,
}

#[derive(Debug, Deserialize)]
struct AccessControlList {
    #[serde(rename = "Grant", default)]
    grants: Vec<GrantXml>,
}

#[derive(Debug, Deserialize)]
struct GrantXml {
    #[serde(rename = "Grantee")]
    grantee: Option<GranteeXml>,
    #[serde(rename = "Permission")]
    permission: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GranteeXml {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "URI")]
    uri: Option<String>,
    #[serde(rename = "EmailAddress")]
    email: Option<String>,
}

fn malformed_acl() -> S3Error {
    S3Error::new(Code::MalformedACLError, "The XML you provided was not well-formed or did not validate against our published schema")
}

/// Parses an AccessControlPolicy body; the grantee's kind is read from the element it
/// carries (`ID`, `URI`, `EmailAddress`), and a DisplayName sent is ignored, as AWS does.
pub fn parse_policy(bytes: &[u8], account: &str) -> Result<Vec<Grant>> {
    let policy: AccessControlPolicy = parse_xml(bytes).map_err(|_| malformed_acl())?;
    let mut grants = Vec::new();
    for grant in policy.list.map(|l| l.grants).unwrap_or_default() {
        let (Some(grantee_xml), Some(permission)) = (grant.grantee, grant.permission) else { return Err(malformed_acl()) };
        if !PERMISSIONS.contains(&permission.as_str()) {
            return Err(malformed_acl());
        }
        let (kind, value) = match (grantee_xml.id, grantee_xml.uri, grantee_xml.email) {
            (Some(id), None, None) => ("id", id),
            (None, Some(uri), None) => ("uri", uri),
            (None, None, Some(email)) => ("emailAddress", email),
            _ => return Err(malformed_acl()),
        };
        grants.push(grantee(kind, value.trim(), &permission, account)?);
    }
    Ok(grants)
}

/// The ACL a PutBucketAcl or PutObjectAcl sets: a canned header, grant headers, or an
/// AccessControlPolicy body, exactly one of them.
async fn requested(req: &Req, body: Incoming, resource: Resource, account: &str) -> Result<Vec<Grant>> {
    let bytes = read_small_body(req, body).await?;
    let has_body = !bytes.iter().all(u8::is_ascii_whitespace);
    match (from_headers(req, resource, account)?, has_body) {
        (Some(_), true) => Err(S3Error::new(Code::UnexpectedContent, "This request does not support content")),
        (Some(grants), false) => Ok(grants),
        (None, true) => parse_policy(&bytes, account),
        (None, false) => {
            Err(S3Error::new(Code::MissingSecurityHeader, "Your request was missing a required header")
                .with("MissingHeaderName", "x-amz-acl"))
        }
    }
}

pub async fn get_bucket_acl(state: &Arc<S3State>, ctx: &RequestCtx, bucket: &str) -> Result<Response<Body>> {
    let info = bucket_info(state, bucket).await?;
    Ok(xml_response(policy_xml(&owner_of(&info, ctx), info.acl.as_deref())))
}

pub async fn put_bucket_acl(state: &Arc<S3State>, ctx: &RequestCtx, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    let info = bucket_info(state, bucket).await?;
    let owner = owner_of(&info, ctx);
    // Under BucketOwnerEnforced AWS refuses every PutBucketAcl, `private` included.
    if info.ownership.as_deref() == Some(OWNERSHIP_ENFORCED) {
        return Err(not_supported());
    }
    let grants = requested(req, body, Resource::Bucket, &owner).await?;
    let acl = admit(&info, grants, &owner)?;
    change_bucket(state, bucket, StatusCode::OK, |info| info.acl = acl).await
}

pub async fn get_object_acl(state: &Arc<S3State>, ctx: &RequestCtx, req: &Req, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    let info = bucket_info(state, bucket).await?;
    let (_, _, meta) = crate::s3::get::open_requested(state, req, bucket, key, "GET").await?;
    Ok(xml_response(policy_xml(&owner_of(&info, ctx), meta.acl.as_deref())))
}

pub async fn put_object_acl(
    state: &Arc<S3State>,
    ctx: &RequestCtx,
    req: &Req,
    body: Incoming,
    bucket: &str,
    key: &str,
) -> Result<Response<Body>> {
    check_key(key)?;
    crate::s3::versioning::requested(req)?;
    let info = bucket_info(state, bucket).await?;
    let owner = owner_of(&info, ctx);
    let grants = requested(req, body, Resource::Object, &owner).await?;
    let acl = admit(&info, grants, &owner)?;
    crate::s3::versioning::change_meta(state, req, bucket, key, "PUT", move |meta| meta.acl = acl).await?;
    Ok(no_body(StatusCode::OK))
}

#[derive(Debug, Deserialize)]
pub(crate) struct OwnershipControls {
    #[serde(rename = "Rule", default)]
    rules: Vec<OwnershipRule>,
}

#[derive(Debug, Deserialize)]
struct OwnershipRule {
    #[serde(rename = "ObjectOwnership")]
    ownership: String,
}

pub async fn get_ownership_controls(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    let Some(ownership) = bucket_info(state, bucket).await?.ownership else {
        return Err(
            S3Error::new(Code::OwnershipControlsNotFoundError, "The bucket ownership controls were not found").with("BucketName", bucket)
        );
    };
    let mut x = Xml::document();
    x.root("OwnershipControls");
    x.node("Rule", |x| x.leaf("ObjectOwnership", &ownership));
    x.close("OwnershipControls");
    Ok(xml_response(x.finish()))
}

pub async fn put_ownership_controls(state: &Arc<S3State>, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    let info = bucket_info(state, bucket).await?;
    let bytes = read_small_body(req, body).await?;
    crate::s3::common::check_small_body_digest(req, &bytes, true)?;
    let controls: OwnershipControls = parse_xml(&bytes)?;
    let [rule] = controls.rules.as_slice() else { return Err(S3Error::malformed_xml()) };
    if !OWNERSHIPS.contains(&rule.ownership.as_str()) {
        return Err(S3Error::malformed_xml());
    }
    let ownership = rule.ownership.clone();
    if ownership == OWNERSHIP_ENFORCED && info.acl.as_deref().is_some_and(is_public) {
        return Err(S3Error::new(
            Code::InvalidBucketAclWithObjectOwnership,
            "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
        ));
    }
    let name = bucket.to_owned();
    blocking(state, move |store| {
        store.update_bucket(&name, |info| {
            // Disabling ACLs resets the bucket's ACL to the owner's FULL_CONTROL.
            if ownership == OWNERSHIP_ENFORCED {
                info.acl = None;
            }
            info.ownership = Some(ownership);
        })
    })
    .await?
    .map_err(|e| store_error(e, bucket))?;
    Ok(no_body(StatusCode::OK))
}

pub async fn delete_ownership_controls(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    change_bucket(state, bucket, StatusCode::NO_CONTENT, |info| info.ownership = None).await
}

/// Whether a bucket is public by its ACL, unless IgnorePublicAcls says to disregard it.
pub fn public_by_acl(info: &BucketInfo) -> bool {
    let ignored = info.public_access_block.is_some_and(|p: PublicAccessBlock| p.ignore_public_acls);
    !ignored && info.acl.as_deref().is_some_and(is_public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Req {
        Req::for_test("/b", headers)
    }

    #[test]
    fn canned_and_header_grants() {
        let acct = "000000000000";
        let private = from_headers(&req(&[("x-amz-acl", "private")]), Resource::Object, acct).unwrap().unwrap();
        assert!(is_default(&private, acct));
        let public = from_headers(&req(&[("x-amz-acl", "public-read")]), Resource::Bucket, acct).unwrap().unwrap();
        assert_eq!((public.len(), is_public(&public)), (2, true));
        let grants = from_headers(
            &req(&[("x-amz-grant-read", "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\", id=\"abc\"")]),
            Resource::Bucket,
            acct,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            grants.iter().map(|g| (g.grantee.as_str(), g.permission.as_str())).collect::<Vec<_>>(),
            [(ALL_USERS, "READ"), ("abc", "READ")]
        );
        assert!(from_headers(&req(&[]), Resource::Object, acct).unwrap().is_none());
        let both = from_headers(&req(&[("x-amz-acl", "private"), ("x-amz-grant-read", "id=\"a\"")]), Resource::Object, acct);
        assert_eq!(both.unwrap_err().code, Code::InvalidRequest);
        assert_eq!(from_headers(&req(&[("x-amz-acl", "nonsense")]), Resource::Object, acct).unwrap_err().code, Code::InvalidArgument);
        let email = from_headers(&req(&[("x-amz-grant-read", "emailAddress=\"a@b.c\"")]), Resource::Object, acct);
        assert_eq!(email.unwrap_err().code, Code::MethodNotAllowed);
    }

    #[test]
    fn access_control_policy_bodies() {
        let acct = "000000000000";
        let body = format!(
            "<AccessControlPolicy xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Owner><ID>{id}</ID></Owner><AccessControlList>\
             <Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"><ID>{id}</ID><DisplayName>x</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant>\
             <Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"Group\"><URI>{ALL_USERS}</URI></Grantee><Permission>READ</Permission></Grant>\
             </AccessControlList></AccessControlPolicy>",
            id = owner_id(acct)
        );
        let grants = parse_policy(body.as_bytes(), acct).unwrap();
        assert_eq!(grants[0], owner_grant(acct));
        assert_eq!(grants[1], group_grant(ALL_USERS, "READ"));
        assert_eq!(parse_policy(b"<AccessControlPolicy><Nope", acct).unwrap_err().code, Code::MalformedACLError);
        let bad_permission = body.replace("<Permission>READ</Permission>", "<Permission>EVERYTHING</Permission>");
        assert_eq!(parse_policy(bad_permission.as_bytes(), acct).unwrap_err().code, Code::MalformedACLError);
        // What GetBucketAcl renders parses back to the same grants.
        assert_eq!(parse_policy(policy_xml(acct, Some(&grants)).as_bytes(), acct).unwrap(), grants);
    }
}
