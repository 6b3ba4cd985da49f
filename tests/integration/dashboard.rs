//! The dashboard page shows the same numbers as GetCampaignReport, in the
//! served HTML and in what headless Chromium renders of it.

use offer_bandit::proto::{CampaignReport, GetCampaignReportRequest};

use crate::support::{TestServer, http_get, redeem, select};

/// The number in `<td class="{class}">N</td>` of the row tagged `{attr}="{key}"`.
fn cell(html: &str, attr: &str, key: &str, class: &str) -> u64 {
    let row_start = html
        .find(&format!("<tr {attr}=\"{key}\">"))
        .unwrap_or_else(|| panic!("no row {attr}={key}"));
    let row = &html[row_start..];
    let row = &row[..row.find("</tr>").expect("row end")];
    let open = format!("<td class=\"{class}\">");
    let at = row.find(&open).expect("cell") + open.len();
    row[at..row[at..].find('<').expect("cell end") + at]
        .parse()
        .expect("a number")
}

fn check(html: &str, r: &CampaignReport) {
    for arm in [
        r.bandit.as_ref().expect("bandit"),
        r.control.as_ref().expect("control"),
    ] {
        assert_eq!(cell(html, "data-arm", &arm.arm, "decisions"), arm.decisions);
        assert_eq!(
            cell(html, "data-arm", &arm.arm, "redemptions"),
            arm.redemptions
        );
    }
    for o in &r.offers {
        assert_eq!(
            cell(html, "data-offer", &o.offer_id, "decisions"),
            o.decisions
        );
        assert_eq!(
            cell(html, "data-offer", &o.offer_id, "redemptions"),
            o.redemptions
        );
    }
    assert!(html.contains("aria-label=\"redemption rate by arm\""));
    assert!(html.contains("aria-label=\"offer share over time\""));
}

#[tokio::test]
async fn the_dashboard_matches_the_report() {
    let mut config = crate::support::campaign_toml("d", &[], "1h", &["a", "b", "c"]);
    config = config.replace(
        "reward_window = \"1h\"\n",
        "reward_window = \"1h\"\ncontrol_share = 0.3\n",
    );
    let server = TestServer::start(Some(&config), &[]);
    let mut offers = server.offers().await;
    for i in 0..300 {
        let mut req = select("d", &[]);
        req.customer_id = format!("m{i}");
        let d = offers.select_offer(req).await.expect("select").into_inner();
        if d.offer_id == "a" || i % 7 == 0 {
            offers
                .record_redemption(redeem(&d.decision_id))
                .await
                .expect("redeem");
        }
    }
    let report = server
        .admin()
        .await
        .get_campaign_report(GetCampaignReportRequest {
            campaign: "d".into(),
        })
        .await
        .expect("report")
        .into_inner();
    let (head, index) = http_get(&server.metrics_addr, "/");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("text/html"),
        "{head}"
    );
    assert!(index.contains("href=\"/campaigns/d\""));
    let (head, page) = http_get(&server.metrics_addr, "/campaigns/d");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    check(&page, &report);
    let (head, _) = http_get(&server.metrics_addr, "/campaigns/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // The same numbers in what a browser renders.
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: .ci/run installs Debian's chromium"
        );
        eprintln!(
            "skipping the headless-Chromium half of this test: chromium is not installed (apt-get install chromium)"
        );
        return;
    };
    let profile = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{}/campaigns/d", server.metrics_addr))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(&String::from_utf8_lossy(&out.stdout), &report);
}
