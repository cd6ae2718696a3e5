SELECT spec_json FROM jobs WHERE id = $1
