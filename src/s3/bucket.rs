//! Bucket operations, and the sub-resources an unconfigured bucket answers.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde::Deserialize;

use crate::http::{Body, RequestCtx, empty};
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::common::{
    blocking, change_bucket, continuation_after, continuation_token, no_body, parse_xml, read_small_body, require_bucket, store_error,
    write_owner, xml_response,
};
use crate::s3::error::{Code, Result, S3Error};
use crate::s3::router::Unconfigured;
use crate::s3::tagging::{parse_tagging, tagging_xml};
use crate::s3::xml::{Xml, timestamp};
use crate::store::{BucketInfo, Created, now_ms, valid_bucket_name};

const BUCKET_TAGS_MAX: usize = 50;

/// ListBuckets, paged by `max-buckets` and `continuation-token` (the last name of the page,
/// opaque), filtered by `prefix` and `bucket-region`, in name order.
pub async fn list_buckets(state: &Arc<S3State>, ctx: &RequestCtx, req: &Req) -> Result<Response<Body>> {
    let q = &req.query;
    let max_buckets =
        match q.get("max-buckets") {
            None => None,
            Some(v) => Some(v.parse::<usize>().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| {
                S3Error::invalid_argument("Argument max-buckets must be an integer between 1 and 10000", "max-buckets", v)
            })?),
        };
    let after = match q.get("continuation-token") {
        None => String::new(),
        Some(token) => continuation_after(token)?,
    };
    let prefix = q.get("prefix");
    let region = q.get("bucket-region");
    // Any of the paging parameters makes it a paged listing, as on AWS.
    let paged = max_buckets.is_some() || prefix.is_some() || region.is_some() || q.get("continuation-token").is_some();
    let mut buckets = blocking(state, |store| store.list_buckets()).await??;
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    let mut chosen = buckets.iter().filter(|b| {
        (b.owner.is_empty() || b.owner == ctx.account)
            && b.name > after
            && prefix.is_none_or(|p| b.name.starts_with(p))
            && region.is_none_or(|r| region_of(b, &state.region) == r)
    });
    let page: Vec<&BucketInfo> = chosen.by_ref().take(max_buckets.unwrap_or(10_000)).collect();
    let more = paged && chosen.next().is_some();
    let mut x = Xml::document();
    x.root("ListAllMyBucketsResult");
    write_owner(&mut x, "Owner", &ctx.account);
    x.node("Buckets", |x| {
        for bucket in &page {
            x.node("Bucket", |x| {
                x.leaf("Name", &bucket.name);
                x.leaf("CreationDate", &timestamp(bucket.created_ms));
                if paged {
                    x.leaf("BucketRegion", region_of(bucket, &state.region));
                }
            });
        }
    });
    if more && let Some(last) = page.last() {
        x.leaf("ContinuationToken", &continuation_token(&last.name));
    }
    x.leaf_opt("Prefix", prefix);
    x.close("ListAllMyBucketsResult");
    Ok(xml_response(x.finish()))
}

fn region_of<'a>(bucket: &'a BucketInfo, default: &'a str) -> &'a str {
    if bucket.region.is_empty() { default } else { &bucket.region }
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct CreateBucketConfiguration {
    #[serde(rename = "LocationConstraint")]
    location_constraint: Option<String>,
}

pub async fn create_bucket(state: &Arc<S3State>, ctx: &RequestCtx, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    if !valid_bucket_name(bucket) {
        return Err(S3Error::new(Code::InvalidBucketName, "The specified bucket is not valid.").with("BucketName", bucket));
    }
    let bytes = read_small_body(req, body).await?;
    let config: CreateBucketConfiguration =
        if bytes.iter().all(u8::is_ascii_whitespace) { CreateBucketConfiguration::default() } else { parse_xml(&bytes)? };
    let constraint = config.location_constraint.filter(|c| !c.is_empty());
    // As AWS: us-east-1 takes no constraint; elsewhere the constraint must name the endpoint's region.
    let region = match (ctx.region.as_str(), constraint.as_deref()) {
        ("us-east-1", None) => "us-east-1".to_owned(),
        ("us-east-1", Some("us-east-1")) => {
            return Err(S3Error::new(Code::InvalidLocationConstraint, "The specified location-constraint is not valid")
                .with("LocationConstraint", "us-east-1"));
        }
        ("us-east-1", Some(other)) => other.to_owned(),
        (region, Some(c)) if c == region => c.to_owned(),
        (_, None) => {
            return Err(S3Error::new(
                Code::IllegalLocationConstraintException,
                "The unspecified location constraint is incompatible for the region specific endpoint this request was sent to.",
            ));
        }
        (_, Some(c)) => {
            return Err(S3Error::new(
                Code::IllegalLocationConstraintException,
                format!("The {c} location constraint is incompatible for the region specific endpoint this request was sent to."),
            ));
        }
    };
    let mut info = BucketInfo::new(bucket, now_ms(), &region, &ctx.account);
    crate::s3::acl::for_new_bucket(req, &mut info, &ctx.account)?;
    let created = blocking(state, move |store| store.create_bucket(&info)).await??;
    if let Created::Blocked = created {
        return Err(S3Error::new(
            Code::BucketAlreadyExists,
            "The requested bucket name is not available: something that is not a bucket folder has this name in the data directory.",
        )
        .with("BucketName", bucket));
    }
    if let Created::Existing(existing) = created {
        if !existing.owner.is_empty() && existing.owner != ctx.account {
            return Err(S3Error::new(
                Code::BucketAlreadyExists,
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
            )
            .with("BucketName", bucket));
        }
        // us-east-1 answers 200 when you re-create your own bucket there (a legacy rule).
        if !(region == "us-east-1" && region_of(&existing, "us-east-1") == "us-east-1") {
            return Err(S3Error::new(
                Code::BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it.",
            )
            .with("BucketName", bucket));
        }
    }
    Ok(crate::http::response(StatusCode::OK, &[("location", &format!("/{bucket}"))], empty()))
}

pub async fn delete_bucket(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    let name = bucket.to_owned();
    blocking(state, move |store| store.delete_bucket(&name)).await?.map_err(|err| match err {
        crate::store::StoreError::BucketNotEmpty => {
            S3Error::new(Code::BucketNotEmpty, "The bucket you tried to delete is not empty").with("BucketName", bucket)
        }
        other => store_error(other, bucket),
    })?;
    Ok(no_body(StatusCode::NO_CONTENT))
}

async fn bucket_info(state: &Arc<S3State>, bucket: &str) -> Result<BucketInfo> {
    let name = bucket.to_owned();
    blocking(state, move |store| store.bucket(&name)).await??.ok_or_else(|| S3Error::no_such_bucket(bucket))
}

pub async fn head_bucket(state: &Arc<S3State>, _ctx: &RequestCtx, bucket: &str) -> Result<Response<Body>> {
    let info = bucket_info(state, bucket).await?;
    let region = region_of(&info, &state.region);
    Ok(crate::http::response(StatusCode::OK, &[("x-amz-bucket-region", region), ("x-amz-access-point-alias", "false")], empty()))
}

pub async fn get_bucket_location(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    let info = bucket_info(state, bucket).await?;
    let region = region_of(&info, &state.region);
    let mut x = Xml::document();
    x.root("LocationConstraint");
    // us-east-1 is the empty location constraint.
    if region != "us-east-1" {
        x.text(region);
    }
    x.close("LocationConstraint");
    Ok(xml_response(x.finish()))
}

/// What AWS answers for a bucket on which nobody configured `what`.
pub async fn get_unconfigured(state: &Arc<S3State>, bucket: &str, what: Unconfigured) -> Result<Response<Body>> {
    bucket_info(state, bucket).await?;
    let mut x = Xml::document();
    match what {
        Unconfigured::Website => {
            return Err(S3Error::new(Code::NoSuchWebsiteConfiguration, "The specified bucket does not have a website configuration")
                .with("BucketName", bucket));
        }
        Unconfigured::Logging => {
            x.root("BucketLoggingStatus");
            x.close("BucketLoggingStatus");
        }
        Unconfigured::RequestPayment => {
            x.root("RequestPaymentConfiguration");
            x.leaf("Payer", "BucketOwner");
            x.close("RequestPaymentConfiguration");
        }
        Unconfigured::Replication => {
            return Err(S3Error::new(Code::ReplicationConfigurationNotFoundError, "The replication configuration was not found")
                .with("BucketName", bucket));
        }
        Unconfigured::ObjectLock => {
            return Err(S3Error::new(
                Code::ObjectLockConfigurationNotFoundError,
                "Object Lock configuration does not exist for this bucket",
            )
            .with("BucketName", bucket));
        }
        Unconfigured::Accelerate => {
            x.root("AccelerateConfiguration");
            x.close("AccelerateConfiguration");
        }
    }
    Ok(xml_response(x.finish()))
}

pub async fn get_bucket_tagging(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    match bucket_info(state, bucket).await?.tags {
        Some(tags) if !tags.is_empty() => Ok(xml_response(tagging_xml(&tags))),
        _ => Err(S3Error::new(Code::NoSuchTagSet, "The TagSet does not exist").with("BucketName", bucket)),
    }
}

pub async fn put_bucket_tagging(state: &Arc<S3State>, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    require_bucket(state, bucket).await?;
    let bytes = read_small_body(req, body).await?;
    let tags = parse_tagging(&bytes, BUCKET_TAGS_MAX)?;
    change_bucket(state, bucket, StatusCode::NO_CONTENT, |info| info.tags = Some(tags)).await
}

pub async fn delete_bucket_tagging(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    change_bucket(state, bucket, StatusCode::NO_CONTENT, |info| info.tags = None).await
}
