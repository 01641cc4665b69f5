//! Charts of finished results (local engine): drawn from the full result after the query, stored
//! next to the CSV, recorded in `status.execution.chartLocation`, shown by `describe` and
//! printed by `sqlctl results NAME --chart`; `spec.chart.type: none` draws nothing.

use crate::harness::*;

/// Applies `yaml`, approves the SQL and waits for Done.
fn approve_to_done(env: &Env, name: &str, yaml: &str) -> serde_json::Value {
    let o = env.apply(yaml);
    assert_eq!(o.code, 0, "{o:?}");
    env.wait_phase(name, "AwaitingApproval", T);
    let digest = env.digest(name);
    env.ok(&["approve", name, "--digest", &digest, "--as", "alice"]);
    env.wait_phase(name, "Done", T)
}

fn condition<'a>(v: &'a serde_json::Value, type_: &str) -> Option<&'a serde_json::Value> {
    v["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

#[test]
fn a_category_result_gets_a_bar_chart_next_to_it_and_none_turns_it_off() {
    let env = Env::new();
    env.controller(&[]);
    let sql = "select n_name, count(*) as customers, sum(c_acctbal) as balance \
               from customer join nation on c_nationkey = n_nationkey group by n_name order by balance desc";
    let v = approve_to_done(&env, "by-nation", &sql_spec("by-nation", sql));
    let exec = &v["status"]["execution"];
    let csv = exec["outputLocation"].as_str().unwrap();
    let chart = exec["chartLocation"].as_str().expect("a chart location");
    let uid = v["metadata"]["uid"].as_str().unwrap();
    let expected = env.home.path().join(format!("results/default/by-nation/{uid}/1-1.svg"));
    assert_eq!(chart, expected.display().to_string());
    assert_eq!(csv.strip_suffix(".csv"), chart.strip_suffix(".svg"), "the chart sits next to the result");
    let c = condition(&v, "Charted").expect("a Charted condition");
    assert_eq!(c["status"], "True");
    // 25 nations ordered by balance: the first 19 and "other". Customer counts (tens) next to
    // balances (hundreds of thousands) would be invisible, so only balance is drawn.
    assert_eq!(c["message"], "bar chart, 20 marks", "{c}");

    // The stored SVG is what `results --chart` prints.
    let file = std::fs::read_to_string(&expected).unwrap();
    let printed = env.ok(&["results", "by-nation", "--chart"]).stdout;
    assert_eq!(printed, file);
    assert!(printed.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{printed}");
    assert!(printed.trim_end().ends_with("</svg>"));
    assert_eq!(printed.matches("<rect ").count(), 1 + 20, "background and 20 bars");
    assert!(printed.contains(">other (6 more): "), "{printed}");
    assert!(printed.contains("customers left out"), "{printed}");
    assert!(printed.contains("the first 19 of 25 categories"), "{printed}");
    // describe shows both locations.
    let d = env.ok(&["describe", "by-nation"]).stdout;
    assert!(d.contains(&format!("Output:       {csv}")) && d.contains(&format!("Chart:        {chart}")), "{d}");
    // `--chart` and `-o` do not mix.
    assert_eq!(env.run(&["results", "by-nation", "--chart", "-o", "json"]).code, 2);

    // type none: Done, no chart, and `results --chart` says why there is none.
    let yaml = sql_spec("no-chart", sql) + "  chart:\n    type: none\n";
    let v = approve_to_done(&env, "no-chart", &yaml);
    assert!(v["status"]["execution"].get("chartLocation").is_none(), "{v}");
    assert!(condition(&v, "Charted").is_none());
    let uid = v["metadata"]["uid"].as_str().unwrap();
    assert!(!env.home.path().join(format!("results/default/no-chart/{uid}/1-1.svg")).exists());
    assert!(env.home.path().join(format!("results/default/no-chart/{uid}/1-1.csv")).exists());
    let o = env.run(&["results", "no-chart", "--chart"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("no-chart has no chart"), "{o:?}");
}

#[test]
fn the_chart_is_drawn_from_the_full_result_not_the_preview() {
    let env = Env::new();
    env.controller(&[]);
    // ~2,400 order dates whose rows (with a 200-character note) overflow the preview's 256 KiB
    // (maxRows now bounds the result file itself, so it stays above the row count): the line
    // must cover every date, not only the preview's.
    let sql = "select o_orderdate, count(*) as orders, repeat('x', 200) as note from orders group by o_orderdate order by o_orderdate";
    let yaml = sql_spec("daily", sql)
        + "  limits:\n    maxRows: 100000\n  chart:\n    type: line\n    x: o_orderdate\n    y: [orders]\n";
    let v = approve_to_done(&env, "daily", &yaml);
    let exec = &v["status"]["execution"];
    let preview_rows = exec["preview"]["rows"].as_array().unwrap().len() as u64;
    assert_eq!(exec["preview"]["truncated"], true);
    let rows = exec["rows"].as_u64().unwrap();
    assert!(rows > 2000 && preview_rows < rows, "{rows} rows, {preview_rows} in the preview");
    let c = condition(&v, "Charted").expect("a Charted condition");
    let message = c["message"].as_str().unwrap();
    let marks: u64 = message.strip_prefix("line chart, ").and_then(|m| m.split(' ').next()).unwrap().parse().unwrap();
    assert!(marks > preview_rows && marks <= rows, "{message}");
    let svg = env.ok(&["results", "daily", "--chart"]).stdout;
    // One line per run of consecutive days: a day with no orders is a gap (issue 16), so the
    // polylines are one more than the gaps in the result's dates.
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["results", "daily", "-o", "json"]).stdout).unwrap();
    let days: Vec<chrono::NaiveDate> =
        json.as_array().unwrap().iter().map(|r| r["o_orderdate"].as_str().unwrap().parse().unwrap()).collect();
    let gaps = days.windows(2).filter(|w| (w[1] - w[0]).num_days() > 1).count();
    assert_eq!(svg.matches("<polyline").count(), 1 + gaps, "{gaps} gaps");
    // Year ticks from the first to the last order year.
    for year in ["1993", "1997"] {
        assert!(svg.contains(&format!(">{year}</text>")), "{year} tick missing");
    }

    // A forced type that the result cannot show: still Done, the condition says why.
    let yaml = sql_spec("forced", "select n_name from nation") + "  chart:\n    type: scatter\n";
    let v = approve_to_done(&env, "forced", &yaml);
    assert!(v["status"]["execution"].get("chartLocation").is_none());
    let c = condition(&v, "Charted").expect("a Charted condition");
    assert_eq!(c["status"], "False");
    assert!(c["message"].as_str().unwrap().contains("scatter"), "{c}");
    let o = env.run(&["results", "forced", "--chart"]);
    assert!(o.code == 1 && o.stderr.contains("scatter"), "{o:?}");
}

/// The chart's marks from its `Charted` message (`line chart, 35 marks`).
fn drawn(v: &serde_json::Value) -> (String, u64) {
    let c = condition(v, "Charted").unwrap_or_else(|| panic!("a Charted condition: {v}"));
    assert_eq!(c["status"], "True", "{c}");
    let m = c["message"].as_str().unwrap();
    let (kind, rest) = m.split_once(" chart, ").unwrap_or_else(|| panic!("{m}"));
    (kind.to_string(), rest.split(' ').next().unwrap().parse().unwrap())
}

const BY_REGION: &str = "from orders join customer on o_custkey = c_custkey join nation on c_nationkey = n_nationkey \
                         join region on n_regionkey = r_regionkey";

/// Issue 16: the shapes that used to mislead draw what the result says.
#[test]
fn charts_follow_the_query_s_shape_not_the_result_s_text() {
    let env = Env::new();
    env.controller(&[]);
    // Year × region × revenue: one line per region over the years; the year is never a measure.
    let sql = format!(
        "select extract(year from o_orderdate) as yr, r_name, sum(o_totalprice) as revenue {BY_REGION} group by 1, 2 order by 1, 2"
    );
    let v = approve_to_done(&env, "yr-region", &sql_spec("yr-region", &sql));
    let rows = v["status"]["execution"]["rows"].as_u64().unwrap();
    assert_eq!(drawn(&v), ("line".into(), rows), "one mark per row, nothing summed");
    let cols = &v["status"]["execution"]["columns"];
    assert_eq!(cols[0]["role"], "dimension", "{cols}");
    assert_eq!(cols[1]["role"], "dimension");
    assert_eq!(cols[2]["role"], "measure");
    assert!(cols[2]["type"].as_str().unwrap().starts_with("decimal("), "{cols}");
    let svg = env.ok(&["results", "yr-region", "--chart"]).stdout;
    for region in ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"] {
        assert!(svg.contains(&format!(">{region}</text>")), "{region} in the legend");
    }
    assert!(!svg.contains("left out") && svg.contains("<desc>line chart over yr;"), "{svg}");
    // results -o json is typed: the year and the revenue are numbers, the region a string.
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["results", "yr-region", "-o", "json"]).stdout).unwrap();
    assert!(json[0]["yr"].is_u64() && json[0]["revenue"].is_number() && json[0]["r_name"].is_string(), "{json}");
    // --chart FILE writes the SVG.
    let file = env.home.path().join("chart.svg");
    env.ok(&["results", "yr-region", "--chart", file.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), svg);

    // Priority × year × count: one line per priority; every value a count, never a year sum.
    let sql = "select o_orderpriority, extract(year from o_orderdate) as yr, count(*) as n from orders group by 1, 2";
    let v = approve_to_done(&env, "prio-yr", &sql_spec("prio-yr", sql));
    let rows = v["status"]["execution"]["rows"].as_u64().unwrap();
    assert_eq!(drawn(&v), ("line".into(), rows));
    let svg = env.ok(&["results", "prio-yr", "--chart"]).stdout;
    assert!(svg.contains(">1-URGENT</text>") && !svg.contains("13,965"), "{svg}");

    // date_trunc by month: a time axis, one vertex per month.
    let sql = "select date_trunc('month', o_orderdate) as m, count(*) as n from orders group by 1 order by 1";
    let v = approve_to_done(&env, "monthly", &sql_spec("monthly", sql));
    let rows = v["status"]["execution"]["rows"].as_u64().unwrap();
    assert_eq!(drawn(&v), ("line".into(), rows));

    // Top-N categories and raw rows: one bar per row.
    let sql = "select c_name, sum(o_totalprice) as spent from orders join customer on o_custkey = c_custkey \
               group by c_name order by spent desc limit 10";
    let v = approve_to_done(&env, "top-n", &sql_spec("top-n", sql));
    assert_eq!(drawn(&v), ("bar".into(), 10));
    let sql = "select c_name, c_acctbal from customer order by c_acctbal desc limit 5";
    let v = approve_to_done(&env, "raw", &sql_spec("raw", sql));
    assert_eq!(drawn(&v), ("bar".into(), 5));
    assert_eq!(v["status"]["execution"]["columns"][1]["role"], "measure");
}

/// Issue 16: one value is an answer line, not a one-bar chart; results too wide to chart say why
/// and still finish Done.
#[test]
fn a_single_value_is_a_headline_and_unchartable_results_say_why() {
    let env = Env::new();
    env.controller(&[]);
    let v = approve_to_done(&env, "revenue", &sql_spec("revenue", "select sum(o_totalprice) as revenue from orders"));
    let exec = &v["status"]["execution"];
    let value = exec["answer"]["values"][0]["value"].as_str().expect("an answer").to_string();
    assert_eq!(exec["answer"]["values"][0]["name"], "revenue");
    let (int, cents) = value.split_once('.').unwrap();
    assert_eq!(cents.len(), 2, "the decimal keeps its scale: {value}");
    assert!(int.contains(',') && int.split(',').skip(1).all(|g| g.len() == 3), "thousands grouped: {value}");
    assert!(exec.get("chartLocation").is_none());
    assert_eq!(condition(&v, "Charted").unwrap()["reason"], "Answered");
    let d = env.ok(&["describe", "revenue"]).stdout;
    assert!(d.contains(&format!("  Answer:       revenue: {value}")), "{d}");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["results", "revenue", "-o", "json"]).stdout).unwrap();
    let raw = value.replace(',', "");
    assert_eq!(json[0]["revenue"].to_string(), raw, "a JSON number, as the engine wrote it");

    // Several measures in one row: labelled values.
    let v = approve_to_done(
        &env,
        "two",
        &sql_spec("two", "select count(*) as orders, sum(o_totalprice) as revenue from orders"),
    );
    let values = v["status"]["execution"]["answer"]["values"].as_array().unwrap().clone();
    assert_eq!(values.len(), 2);
    let d = env.ok(&["describe", "two"]).stdout;
    assert!(d.contains("  Answer:\n    orders:  ") && d.contains("    revenue: "), "{d}");

    // 1,500 distinct customers (scale 0.01): no chart, the reason in the condition, still Done.
    let v = approve_to_done(&env, "wide", &sql_spec("wide", "select c_name, c_acctbal from customer"));
    let c = condition(&v, "Charted").expect("a Charted condition");
    assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some("NoFittingChart")), "{c}");
    assert!(c["message"].as_str().unwrap().contains("more than 100 values"), "{c}");
    // Rows repeating the only dimension: no chart, and why.
    let v = approve_to_done(
        &env,
        "repeats",
        &sql_spec("repeats", "select o_orderpriority, o_totalprice from orders limit 50"),
    );
    let c = condition(&v, "Charted").expect("a Charted condition");
    assert!(c["message"].as_str().unwrap().contains("rows repeat values of o_orderpriority"), "{c}");
}
