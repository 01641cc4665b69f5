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
    assert_eq!(svg.matches("<polyline").count(), 1);
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
