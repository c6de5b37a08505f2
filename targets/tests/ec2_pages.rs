//! The EC2 inventory streams: DescribeInstances pages are parsed and dropped one by one, so listing a fleet
//! never holds more than its instances plus one page. moto is far too slow for 100,000 instances; here a
//! loopback server answers DescribeInstances with large generated pages (1,000 instances each, the API's
//! maximum) and a counting allocator measures what the listing holds at its peak beyond its result.
#![allow(clippy::disallowed_methods)] // the server thread runs on real time

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use simian_config::{AwsEc2Target, OptIn, TargetConfig};
use simian_targets::Target;
use testkit::{GROUP_TAG, OPT_IN_TAG, REGION};

/// Counts the heap of the thread that measures, and only while it measures: the other tests of this binary
/// (and the page server's threads) allocate on their own threads. The listing runs on that thread too
/// (`#[tokio::test]` is a current-thread runtime), so what it holds is counted.
struct Counting;

thread_local! {
    /// Whether this thread counts; (live, peak) bytes while it does. Const-initialized, so reading them
    /// never allocates (an allocator must not).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// Adds `delta` bytes to this thread's count when it is counting.
fn count(delta: isize) {
    // `try_with`: a thread being torn down may still free memory after its locals are gone.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let live = LIVE.with(Cell::get) + delta;
        LIVE.with(|l| l.set(live));
        PEAK.with(|p| p.set(p.get().max(live)));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const PER_PAGE: usize = 1000;

/// Page `n` of `pages`: 1,000 running, opted-in instances, and the token of the next page.
fn page(n: usize, pages: usize) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><reservationSet>",
    );
    for i in n * PER_PAGE..(n + 1) * PER_PAGE {
        xml.push_str(&format!(
            "<item><reservationId>r-{i:08x}</reservationId><ownerId>123456789012</ownerId><instancesSet><item>\
             <instanceId>i-{i:017x}</instanceId><imageId>ami-12345678</imageId>\
             <instanceState><code>16</code><name>running</name></instanceState>\
             <privateDnsName>ip-127-0-0-1.ec2.internal</privateDnsName><instanceType>t3.micro</instanceType>\
             <privateIpAddress>127.0.{}.{}</privateIpAddress>\
             <placement><availabilityZone>{REGION}{}</availabilityZone><tenancy>default</tenancy></placement>\
             <tagSet><item><key>{OPT_IN_TAG}</key><value>true</value></item>\
             <item><key>{GROUP_TAG}</key><value>asg-{}</value></item>\
             <item><key>Name</key><value>service-{} instance {i}</value></item></tagSet>\
             </item></instancesSet></item>",
            (i >> 8) & 255,
            i & 255,
            ['a', 'b', 'c'][i % 3],
            i / 10,
            i / 10,
        ));
    }
    xml.push_str("</reservationSet>");
    if n + 1 < pages {
        xml.push_str(&format!("<nextToken>{}</nextToken>", n + 1));
    }
    xml.push_str("</DescribeInstancesResponse>");
    xml
}

/// Answers every DescribeInstances on one keep-alive connection.
fn serve(stream: TcpStream, pages: usize) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let body = String::from_utf8_lossy(&body);
        let token = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("NextToken="))
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let xml = page(token, pages);
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            xml.len()
        )?;
        out.write_all(xml.as_bytes())?;
    }
}

/// A loopback DescribeInstances server with `pages` pages; its endpoint URL.
fn server(pages: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, pages));
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// Lists `pages` pages; (instances, heap bytes held at the peak beyond the result, bytes of the result).
async fn list(pages: usize) -> (usize, usize, usize) {
    let target = Target::from_config(
        &TargetConfig::AwsEc2(AwsEc2Target {
            name: "aws".into(),
            regions: vec![REGION.to_string()],
            endpoint_url: Some(server(pages)),
            profile: None,
            group_by: GROUP_TAG.to_string(),
            opt_in: None,
            isolation_group: "simian-isolation".into(),
            terminate_batch: 100,
        }),
        &OptIn::default(),
    );
    let target = Arc::new(target);
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    COUNTING.with(|c| c.set(true));
    let inv = target.inventory().await.expect("inventory");
    COUNTING.with(|c| c.set(false));
    let (after, peak) = (LIVE.with(Cell::get).max(0) as usize, PEAK.with(Cell::get).max(0) as usize);
    assert_eq!(target.api_calls(), pages as u64, "one call per page");
    (inv.len(), peak.saturating_sub(after), after)
}

#[tokio::test]
async fn the_inventory_holds_one_page_at_a_time_whatever_the_fleet() {
    testkit::fake_aws_env();
    let (n4, over4, kept4) = list(4).await;
    let (n16, over16, kept16) = list(16).await;
    assert_eq!((n4, n16), (4 * PER_PAGE, 16 * PER_PAGE));
    eprintln!(
        "4 pages: {} KiB kept, {} KiB more at the peak; 16 pages: {} KiB kept, {} KiB more at the peak",
        kept4 >> 10,
        over4 >> 10,
        kept16 >> 10,
        over16 >> 10
    );
    // The result grows with the fleet; what the listing holds beyond it is one page, not the fleet.
    assert!(kept16 > 3 * kept4, "the result holds the instances: {kept4} then {kept16} bytes");
    assert!(
        over16 < over4 + over4 / 2 + (1 << 20),
        "peak overhead grew with the page count: {over4} bytes for 4 pages, {over16} for 16"
    );
}
