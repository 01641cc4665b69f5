//! `--results s3://bucket/prefix` with the local backend (moto as S3): the finished CSV is
//! uploaded to `<prefix>/<namespace>/<name>/<generation>-<attempt>.csv` before the request is
//! Done, that URI is the output location, `sqlctl results` reads it back from S3, the chart goes
//! next to it, and a missing bucket fails the request with what to fix.

use std::process::{Command, Stdio};

use crate::aws_support::moto_url;
use crate::harness::*;

/// A local-backend home whose controller and `results` talk to moto's S3.
struct S3Home {
    // Dropped first: the controller stops before its home goes.
    children: Children,
    env: Env,
    moto: String,
    results: String,
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
}

impl S3Home {
    /// A fresh home with a unique bucket name, created in moto when `create_bucket`.
    fn new(create_bucket: bool) -> Option<S3Home> {
        let moto = moto_url()?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let conf = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(&moto)
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"))
                .load(),
        );
        let s3 = sqlctl::aws::s3(&conf);
        let bucket = format!("e2e-results-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        if create_bucket {
            rt.block_on(s3.create_bucket().bucket(&bucket).send()).expect("creating the bucket in moto");
        }
        Some(S3Home {
            env: Env::new(),
            moto,
            results: format!("s3://{bucket}/team/results"),
            rt,
            s3,
            children: Children::default(),
        })
    }

    fn bucket(&self) -> &str {
        self.results.trim_start_matches("s3://").split('/').next().unwrap()
    }

    /// `sqlctl` on the local backend with AWS pointed at moto and `SQLCTL_RESULTS_S3` set.
    fn cmd(&self) -> Command {
        let mut c = self.env.aws_cmd(&self.moto);
        c.env("SQLCTL_RESULTS_S3", &self.results);
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        self.cmd().args(args).output().expect("running sqlctl").into()
    }

    /// Starts the controller (its log is `controller-0.log`, which `wait_phase` prints).
    fn controller(&self) {
        let log = std::fs::File::create(self.env.home.path().join("controller-0.log")).unwrap();
        let child = self
            .cmd()
            .args(["--results", &self.results])
            .args(["controller", "--retry-period", "200ms", "--renew-deadline", "1s", "--lease-duration", "2s"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    fn object(&self, key: &str) -> Option<Vec<u8>> {
        let got = self.rt.block_on(self.s3.get_object().bucket(self.bucket()).key(key).send()).ok()?;
        Some(self.rt.block_on(got.body.collect()).unwrap().into_bytes().to_vec())
    }
}

const SQL: &str = "select r_name, count(*) as nations from region join nation on n_regionkey = r_regionkey \
                   group by r_name order by r_name";

#[test]
fn the_local_engine_uploads_results_and_charts_to_s3() {
    let Some(h) = S3Home::new(true) else { return };
    h.controller();
    assert_eq!(h.env.apply(&sql_spec("regions", SQL)).code, 0);
    h.env.wait_phase("regions", "AwaitingApproval", T);
    let digest = h.env.digest("regions");
    h.env.ok(&["approve", "regions", "--digest", &digest, "--as", "alice"]);
    let v = h.env.wait_phase("regions", "Done", T);
    let exec = &v["status"]["execution"];

    // The location is derived from the request, its uid, generation and attempt.
    let uid = v["metadata"]["uid"].as_str().unwrap();
    let loc = exec["outputLocation"].as_str().unwrap();
    assert_eq!(loc, format!("{}/default/regions/{uid}/1-1.csv", h.results));
    let uploaded = h.object(&format!("team/results/default/regions/{uid}/1-1.csv")).expect("the CSV in S3");
    let local = std::fs::read(h.env.home.path().join(format!("results/default/regions/{uid}/1-1.csv"))).unwrap();
    assert_eq!(uploaded, local, "the full CSV, as written locally");
    let (cols, rows) = h.rt.block_on(sqlctl::engine::datafusion::run_sql_collect(warehouse(), "tpch", SQL)).unwrap();
    let mut expected = cols.join(",") + "\n";
    for r in &rows {
        expected.push_str(&r.iter().map(|c| c.clone().unwrap_or_default()).collect::<Vec<_>>().join(","));
        expected.push('\n');
    }
    assert_eq!(String::from_utf8(uploaded).unwrap(), expected);

    // `sqlctl results` reads it back from S3.
    let o = h.run(&["results", "regions"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, expected);

    // The chart went next to it, in S3 too, and describe shows both.
    let chart = exec["chartLocation"].as_str().expect("a chart");
    assert_eq!(chart, format!("{}/default/regions/{uid}/1-1.svg", h.results));
    let svg = h.object(&format!("team/results/default/regions/{uid}/1-1.svg")).expect("the chart in S3");
    assert!(svg.starts_with(b"<svg "), "{}", String::from_utf8_lossy(&svg));
    let o = h.run(&["results", "regions", "--chart"]);
    assert_eq!(o.stdout.as_bytes(), svg.as_slice());
    let d = h.env.ok(&["describe", "regions"]).stdout;
    assert!(d.contains(&format!("Output:       {loc}")) && d.contains(&format!("Chart:        {chart}")), "{d}");

    // Without --results the CLI does not touch AWS and says what to set.
    let o = h.env.run(&["results", "regions"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("--results"), "{o:?}");
    // A location outside the configured prefix is refused rather than read (the flag wins over
    // SQLCTL_RESULTS_S3).
    let o = h.run(&["--results", &format!("s3://{}/elsewhere", h.bucket()), "results", "regions"]);
    assert!(o.code == 1 && o.stderr.contains("not a result of this engine"), "{o:?}");
    assert!(h.env.controller_log(0).contains("result uploaded"));
}

#[test]
fn a_missing_bucket_fails_the_request_with_what_to_fix() {
    let Some(h) = S3Home::new(false) else { return };
    h.controller();
    assert_eq!(h.env.apply(&sql_spec("nobucket", SQL)).code, 0);
    h.env.wait_phase("nobucket", "AwaitingApproval", T);
    let digest = h.env.digest("nobucket");
    h.env.ok(&["approve", "nobucket", "--digest", &digest, "--as", "alice"]);
    let v = h.env.wait_phase("nobucket", "Failed", T);
    let exec = &v["status"]["execution"];
    let error = exec["error"].as_str().unwrap();
    assert!(error.contains(&format!("bucket {} does not exist", h.bucket())) && error.contains("--results"), "{error}");
    // Permanent: no further attempts.
    assert_eq!(exec["attempt"], 1);
}
