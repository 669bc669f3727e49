#!/usr/bin/perl
# Writes two small MaxMind-format databases for the tests, with MaxMind's own writer
# (Debian's libmaxmind-db-writer-perl): a City-shaped one and an ASN-shaped one for
# documentation ranges, so no real person's address is ever in a fixture.
#   scripts/make-test-mmdb.pl OUT_DIR
use strict;
use warnings;
use utf8;
use MaxMind::DB::Writer::Tree;

my $out = shift or die "usage: $0 OUT_DIR\n";

my %city_types = (
    city      => 'map',
    country   => 'map',
    location  => 'map',
    names     => 'map',
    en        => 'utf8_string',
    iso_code  => 'utf8_string',
    latitude  => 'double',
    longitude => 'double',
);
my $city = MaxMind::DB::Writer::Tree->new(
    ip_version            => 6,
    record_size           => 24,
    # Documentation ranges are reserved; the writer drops them unless told not to.
    remove_reserved_networks => 0,
    database_type         => 'DBIP-City-Lite-Test',
    languages             => ['en'],
    description           => { en => 'tracer test city database' },
    map_key_type_callback => sub { $city_types{ $_[0] } },
);
$city->insert_network('203.0.113.0/24', {
    city     => { names => { en => 'São Paulo' } },
    country  => { iso_code => 'BR' },
    location => { latitude => -23.55, longitude => -46.63 },
});
$city->insert_network('198.51.100.0/24', {
    city     => { names => { en => 'Berlin' } },
    country  => { iso_code => 'DE' },
    location => { latitude => 52.52, longitude => 13.40 },
});
open my $fh, '>:raw', "$out/test-city.mmdb" or die "$out/test-city.mmdb: $!\n";
$city->write_tree($fh);
close $fh;

my %asn_types = (
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
);
my $asn = MaxMind::DB::Writer::Tree->new(
    ip_version            => 6,
    record_size           => 24,
    # Documentation ranges are reserved; the writer drops them unless told not to.
    remove_reserved_networks => 0,
    database_type         => 'DBIP-ASN-Lite-Test',
    languages             => ['en'],
    description           => { en => 'tracer test ASN database' },
    map_key_type_callback => sub { $asn_types{ $_[0] } },
);
$asn->insert_network('203.0.113.0/24', {
    autonomous_system_number       => 64500,
    autonomous_system_organization => 'Example Transit',
});
$asn->insert_network('198.51.100.0/24', {
    autonomous_system_number       => 64501,
    autonomous_system_organization => 'Example Hosting',
});
open $fh, '>:raw', "$out/test-asn.mmdb" or die "$out/test-asn.mmdb: $!\n";
$asn->write_tree($fh);
close $fh;
