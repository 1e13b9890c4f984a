"""The S3 dialect of `ossmount serve` (sans-IO): AWS signature checks (`auth`), aws-chunked bodies (`chunked`),
request/response translation onto the shared OSS operations (`dialect`) and S3 XML (`xml`)."""
